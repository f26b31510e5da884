"""`basereward export`: a trained reward model as a plain checkpoint directory, LoRA adapters merged.

    basereward export --model runs/rm/final --out exported/rm [--format basereward|hf] [--base-model DIR]
    basereward export --model runs/rm/checkpoints/step-001000 --out exported/rm-1000

--model may also be a step checkpoint of a training run (sharded, written by any number of processes): the model
is rebuilt from the run's config.json (its backbone, head, LoRA and frozen parts) and the checkpoint's trained
weights are read into it, so intermediate checkpoints can be scored and evaluated like the final one. Such an
export has no reward calibration (mean/std come from the final validation pass).

--format basereward (default): a full checkpoint that `load_reward_model` / `basereward score` read without the
  base model: an adapter checkpoint is loaded on its base, merged, and written with the stock Hugging Face backbone
  keys (no lora_A / base_layer); a plain checkpoint is re-written as is (a copy).
--format hf: the same directory, plus the head in a form stock `transformers` + `torch` code loads without
  basereward (README, "Loading an exported reward model with plain transformers"):
      reward_head.safetensors   keys of `nn.Sequential(Linear, act, Linear, ..., Linear)`: "0.weight", "0.bias", ...
      reward_head.json          layer widths, activation, the scored token, how prompt/response are tokenised,
                                reward mean/std
  The directory stays a basereward checkpoint too, so one export serves both kinds of user.

The output is written under `<out>.tmp` and renamed when complete; an existing non-empty `--out` is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from basereward.config import call_with_flags

HF_HEAD_FILE = "reward_head.safetensors"
HF_HEAD_SPEC = "reward_head.json"
TEMPLATE_RULE = (
    "prompt: tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), tokenised with "
    "add_special_tokens=False; response: tokenizer(response, add_special_tokens=False) followed by the id of "
    "score_token; input_ids = prompt ids + response ids; reward = head(last_hidden_state[0, -1].float()). VL "
    "backbones: the processor expands each image pad of the prompt and gives pixel_values, image_grid_thw and "
    "mm_token_type_ids (0 for every response token)."
)


def add_args(p) -> None:
    p.add_argument(
        "--model", required=True, help="trained reward-model directory (full or LoRA adapter checkpoint)"
    )
    p.add_argument("--out", required=True, help="new directory to write (must not exist or be empty)")
    p.add_argument(
        "--format",
        default="basereward",
        choices=["basereward", "hf"],
        help="basereward: plain checkpoint; hf: the same + reward_head.{safetensors,json} for stock "
        "transformers",
    )
    p.add_argument("--base-model", default=None, help="an adapter checkpoint's base model, if it has moved")


def run(args) -> dict:
    return call_with_flags(export, args, model_dir=args.model, out_dir=args.out)


def export(
    model_dir: str | Path, out_dir: str | Path, *, format: str = "basereward", base_model: str | None = None
) -> dict:
    """Write `model_dir` (a final, adapter or step checkpoint) as one plain checkpoint directory `out_dir`, LoRA
    adapters merged; `format="hf"` adds the head files stock transformers code reads."""
    from basereward.checkpoint import is_step_checkpoint
    from basereward.model.reward_model import load_reward_model
    from basereward.types import DataError

    if format not in ("basereward", "hf"):
        raise DataError(f"format={format!r}: expected basereward or hf")
    src, out = Path(model_dir), Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"--out {out} exists and is not an empty directory; choose a new one")
    if out.resolve() == src.resolve():
        raise DataError("--out must differ from --model")
    if is_step_checkpoint(src):
        model, processor = from_step_checkpoint(src, base_model)
    else:
        model, processor = load_reward_model(src, base_model=base_model)
    adapter = model.merged_lora
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save(tmp, processor)
    if format == "hf":
        write_hf_head(model, tmp)
    if out.exists():
        out.rmdir()  # checked empty above
    tmp.rename(out)
    return {
        "out": str(out),
        "format": format,
        "model_type": model.model_type,
        "merged_adapter": adapter,
        "files": sorted(p.name for p in out.iterdir()),
    }


def from_step_checkpoint(ckpt_dir: Path, base_model: str | None):
    """The model of a step checkpoint: rebuilt from the run's config, its trained weights read in, adapters
    merged."""
    import dataclasses

    from basereward.checkpoint import load_model_weights
    from basereward.config import TrainConfig, from_dict
    from basereward.model.build import build_model
    from basereward.model.lora import merge_lora

    run_config = ckpt_dir.resolve().parent.parent / "config.json"  # output_dir/checkpoints/step-N
    if not run_config.is_file():
        raise FileNotFoundError(
            f"{ckpt_dir}: a step checkpoint, but its run's config ({run_config}) is missing"
        )
    cfg = from_dict(TrainConfig, json.loads(run_config.read_text()))
    if base_model:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=base_model))
    if not (Path(cfg.model.backbone) / "config.json").is_file():
        raise FileNotFoundError(
            f"{ckpt_dir}: the run's backbone {cfg.model.backbone} is missing; pass --base-model"
        )
    model, processor = build_model(cfg)
    load_model_weights(ckpt_dir, model)
    model.eval()
    return merge_lora(model), processor


def write_hf_head(model, out_dir: Path) -> None:
    """The head with plain `nn.Sequential` keys + its description, for code that does not import basereward."""
    import torch
    from safetensors.torch import save_file

    linears = [m for m in model.head.mlp if isinstance(m, torch.nn.Linear)]
    # Rebuilt as Sequential(Linear, act, Linear, ..., Linear): linear i sits at index 2*i. Dropout is training-only
    # and is left out.
    tensors = {}
    for i, lin in enumerate(linears):
        tensors[f"{2 * i}.weight"] = lin.weight.detach().float().contiguous().cpu()
        if lin.bias is not None:
            tensors[f"{2 * i}.bias"] = lin.bias.detach().float().contiguous().cpu()
    save_file(tensors, str(out_dir / HF_HEAD_FILE))
    spec = {
        "module": "torch.nn.Sequential(Linear, activation, Linear, ..., Linear); no activation after the last",
        "linear_layers": [
            {"in": m.in_features, "out": m.out_features, "bias": m.bias is not None} for m in linears
        ],
        "activation": model.head.cfg.activation,  # none (identity) | silu | tanh | relu: torch.nn.<Name>
        "dtype": "float32",
        "backbone_class": type(model.backbone).__name__,
        "score_token": model.pool_token,
        "template": TEMPLATE_RULE,
        "reward_stats": model.reward_stats,  # validation mean/std: normalised = (reward - mean) / std
    }
    (out_dir / HF_HEAD_SPEC).write_text(json.dumps(spec, indent=2) + "\n")
