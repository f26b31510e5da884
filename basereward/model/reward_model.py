"""RewardModel = backbone + RewardHead, and its checkpoint directory.

The backbone runs without an LM head; the head reads the final hidden state at each reward's scored token (the
`<|im_end|>` closing the response, see `basereward.template`). A checkpoint directory holds:

    config.json, model.safetensors      the backbone in Hugging Face layout (loadable on its own)
    head.safetensors                    the reward head
    tokenizer / processor files         everything `load_processor` needs
    basereward.json                     head config, pooling rule, reward mean/std, library versions

A LoRA model (`basereward.model.lora`) writes an *adapter checkpoint* instead of the backbone files:

    adapter.safetensors                 the adapters (lora_A/lora_B) + every backbone tensor trained in full
    basereward.json                     ... + "adapter": base model path, rank, alpha, dropout, targets

so a run's checkpoints do not each copy the frozen base. `load_reward_model` loads the base from the recorded path
(or `base_model=`), injects and fills the adapters and merges them; `basereward export` writes a plain directory.

Only safetensors and JSON are read back: nothing is unpickled. Loading is strict: a malformed basereward.json, a
head or adapter file whose tensors do not fit, or a backbone with a tensor missing is a `DataError` naming the file
(and field or tensor), never a model with silently random weights.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from basereward.collate import Batch
from basereward.config import HeadConfig
from basereward.model.backbone import hidden_size, load_backbone, model_type_of
from basereward.model.head import RewardHead
from basereward.types import DataError

META_FILE = "basereward.json"
HEAD_FILE = "head.safetensors"
ADAPTER_FILE = "adapter.safetensors"
FORMAT_VERSION = 1
POOLING_RULE = (
    "final hidden state at the turn-closing token appended to each response (the last token of the row)"
)


class RewardModel(nn.Module):
    def __init__(
        self, backbone: nn.Module, head: RewardHead, model_type: str, pool_token: str = "<|im_end|>"
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.model_type = model_type
        self.pool_token = pool_token
        self.reward_stats: dict | None = None  # {"mean", "std", "n", "split"} measured after training
        self.base_dir: str | None = None  # absolute path of the backbone directory the weights came from
        self.lora: dict | None = None  # LoRA settings while adapters are attached (basereward.model.lora)
        self.merged_lora: dict | None = None  # the settings of adapters already folded into the weights

    @classmethod
    def from_backbone(
        cls,
        model_dir: str | Path,
        head_cfg: HeadConfig = HeadConfig(),
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        attn_implementation: str = "sdpa",
    ) -> RewardModel:
        """A new reward model: pretrained backbone from `model_dir`, newly initialised head (seeded)."""
        backbone = load_backbone(model_dir, dtype=dtype, attn_implementation=attn_implementation)
        gen = torch.random.fork_rng()
        with gen:
            torch.manual_seed(seed)
            head = RewardHead(hidden_size(backbone), head_cfg)
        model = cls(backbone, head, model_type_of(model_dir))
        model.base_dir = str(Path(model_dir).resolve())  # an adapter checkpoint records it as its base
        return model

    def forward(self, batch: Batch) -> torch.Tensor:
        """Rewards (N,) in fp32, one per response, in the batch's reward order."""
        return self.rewards(self.hidden(batch), batch)

    def hidden(self, batch: Batch) -> torch.Tensor:
        """The backbone's final hidden states (R, L, H) of a collated batch, in either layout."""
        inputs = batch.model_inputs()
        if batch.position_shift is not None:
            inputs["position_ids"] = self.shared_position_ids(batch)
            if self.backbone.config._attn_implementation == "eager":  # eager adds the mask to the scores
                inputs["attention_mask"] = torch.zeros(
                    batch.attention_mask.shape,
                    dtype=self.dtype_of_compute(),
                    device=batch.attention_mask.device,
                ).masked_fill(~batch.attention_mask, torch.finfo(self.dtype_of_compute()).min)
        if getattr(self, "attention_adapter", None) is not None:  # GPU: basereward.model.gpu_attention.enable
            inputs = self.attention_adapter(batch, inputs)
        keepalive = getattr(self, "vision_keepalive", None)  # set by basereward.sharding on several processes
        if keepalive is not None and batch.pixel_values is None and batch.pixel_values_videos is None:
            # an image-less forward still runs the vision tower, where an image forward runs it: right after the
            # token embedding. The added term is exactly zero (see basereward/sharding.py)
            embeds = self.backbone.get_input_embeddings()(inputs["input_ids"])
            inputs["inputs_embeds"] = embeds + keepalive().to(embeds.dtype)
        return self.backbone(**inputs, use_cache=False).last_hidden_state

    def rewards(self, hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The head on the hidden state at each reward's scored token: (N,) fp32."""
        h = hidden[batch.score_rows, batch.score_cols]
        # The head runs in fp32 whatever the backbone dtype: it is tiny and rewards feed a sigmoid. (Cast only when
        # needed: under FSDP the head's parameters are sharded fp32 already and must not be re-assigned.)
        head = self.head if self.head.mlp[-1].weight.dtype == torch.float32 else self.head.float()
        with torch.autocast(device_type=h.device.type, enabled=False):
            return head(h.float())

    def shared_position_ids(self, batch: Batch) -> torch.Tensor:
        """Positions for the prefix-shared layout: the row's positions as if it were one sequence (mRoPE for VL
        backbones, so image tokens get their 2-D grid positions), minus `position_shift` so every response restarts
        right after the prompt. Exact because responses are text: their three mRoPE axes advance together."""
        valid = batch.valid_mask
        if self.model_type in ("qwen2_5_vl", "qwen2_vl"):
            extra = (
                {"second_per_grid_ts": batch.second_per_grid_ts} if self.model_type == "qwen2_5_vl" else {}
            )
            pos, _ = self.backbone.get_rope_index(
                batch.input_ids,
                batch.mm_token_type_ids,
                image_grid_thw=batch.image_grid_thw,
                video_grid_thw=batch.video_grid_thw,
                attention_mask=valid,
                **extra,
            )
            return (pos - batch.position_shift[None]).masked_fill(valid[None] == 0, 1)
        return ((valid.cumsum(-1) - 1) - batch.position_shift).masked_fill(valid == 0, 1)

    def dtype_of_compute(self) -> torch.dtype:
        return next(self.backbone.parameters()).dtype

    def save(self, out_dir: str | Path, processor=None, state_dict: dict | None = None) -> Path:
        """Write the checkpoint directory (module docstring). `state_dict`: a full state dict of this model (keys
        "backbone.*" and "head.*", e.g. gathered on rank 0 from FSDP shards) to write instead of the module's own
        tensors. A LoRA model writes an adapter checkpoint."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        sd = dict(state_dict) if state_dict is not None else None
        if sd is not None:
            sd = {k.removeprefix("_orig_mod."): v for k, v in sd.items()}  # torch.compile's wrapper prefix
        backbone_sd = None if sd is None else _strip(sd, "backbone.")
        head_sd = self.head.state_dict() if sd is None else _strip(sd, "head.")
        expected_head = set(self.head.state_dict())
        if set(head_sd) != expected_head:  # a state dict without the head must not pass silently
            raise ValueError(f"state_dict: head keys {sorted(head_sd)}, expected {sorted(expected_head)}")
        adapter = None
        if self.lora:
            adapter = self._save_adapter(out, backbone_sd)
        else:
            self.backbone.save_pretrained(out, state_dict=backbone_sd, safe_serialization=True)
            (out / ADAPTER_FILE).unlink(missing_ok=True)  # a LoRA save earlier in the same dir
        head_cpu = {k: v.detach().float().contiguous().cpu() for k, v in head_sd.items()}
        save_file(head_cpu, str(out / HEAD_FILE))
        if processor is not None:
            from basereward.model.processor import save_processor

            save_processor(processor, out)
        meta = self.metadata()
        if adapter is not None:
            meta["adapter"] = adapter
        (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return out

    def _save_adapter(self, out: Path, backbone_sd: dict | None) -> dict:
        """The adapters and the backbone tensors trained in full (requires_grad: e.g. an unfrozen vision tower or
        merger), never the frozen base; returns the basereward.json "adapter" entry."""
        from basereward.model.lora import is_lora_key

        if not self.base_dir:
            raise ValueError(
                "a LoRA model needs base_dir (the base backbone directory) to write an adapter "
                "checkpoint; build it with RewardModel.from_backbone"
            )
        trained = {n for n, p in self.backbone.named_parameters() if p.requires_grad and not is_lora_key(n)}
        source = self.backbone.state_dict() if backbone_sd is None else backbone_sd
        tensors = {
            k: v.detach().contiguous().cpu() for k, v in source.items() if is_lora_key(k) or k in trained
        }
        if not any(is_lora_key(k) for k in tensors):
            raise ValueError("model.lora is set but the state dict holds no lora_A/lora_B tensors")
        save_file(tensors, str(out / ADAPTER_FILE))
        for stale in out.glob("model*.safetensors*"):  # a full save (or its shards) earlier in this dir
            stale.unlink()
        return {
            **self.lora,
            "base_model": self.base_dir,
            "file": ADAPTER_FILE,
            "full_tensors": len([k for k in tensors if not is_lora_key(k)]),
        }

    def metadata(self) -> dict:
        import transformers

        return {
            "format_version": FORMAT_VERSION,
            "model_type": self.model_type,
            "head": self.head.cfg.to_dict(),
            "hidden_size": hidden_size(self.backbone),
            "pooling": {"rule": POOLING_RULE, "token": self.pool_token},
            "reward_stats": self.reward_stats,
            **({"merged_adapter": self.merged_lora} if self.merged_lora else {}),
            "versions": {
                "basereward": _own_version(),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "python": platform.python_version(),
            },
        }


def _strip(sd: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def _own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("basereward")
    except PackageNotFoundError:
        return "unknown"


def load_reward_model(
    model_dir: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | None = None,
    attn_implementation: str = "sdpa",
    max_pixels: int | None = None,
    base_model: str | Path | None = None,
    merge_lora: bool = True,
):
    """Load a trained reward model directory. Returns `(model, processor)`, the model in eval mode.

    An adapter checkpoint loads its base backbone (the path recorded at training, or `base_model` when the base
    has moved) and its adapters; `merge_lora=True` folds them into the weights (inference), False keeps them
    attached and trainable (resuming a LoRA run)."""
    from basereward.model.processor import load_processor

    model_dir = Path(model_dir)
    meta = read_metadata(model_dir)
    head_cfg = HeadConfig(**meta["head"])  # validated by read_metadata
    adapter = meta.get("adapter")
    weights_dir = model_dir if adapter is None else _adapter_base(model_dir, adapter, meta, base_model)
    backbone = load_backbone(weights_dir, dtype=dtype, attn_implementation=attn_implementation)
    hidden = hidden_size(backbone)
    if meta.get("hidden_size") is not None and meta["hidden_size"] != hidden:
        raise DataError(
            f"{model_dir / META_FILE}: field hidden_size is {meta['hidden_size']}, but the backbone in "
            f"{weights_dir} has hidden size {hidden}"
        )
    head = RewardHead(hidden, head_cfg)
    _load_strict(head, model_dir / HEAD_FILE, "the reward head")
    model = RewardModel(backbone, head, meta["model_type"], meta["pooling"]["token"])
    model.reward_stats = meta.get("reward_stats")
    model.base_dir = str(weights_dir.resolve())
    model.merged_lora = meta.get("merged_adapter")
    if adapter is not None:
        _attach_adapter(model, model_dir / adapter.get("file", ADAPTER_FILE), adapter)
        if merge_lora:
            from basereward.model.lora import merge_lora as merge

            merge(model)
    if device is not None:
        model.to(device)
    model.eval()
    return model, load_processor(model_dir, meta["model_type"], max_pixels=max_pixels)


def read_metadata(model_dir: str | Path, paradigm: str = "naive") -> dict:
    """basereward.json of a checkpoint directory with a reward head (`paradigm` naive, or critic), checked: a
    DataError names the file and the field at fault."""
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: no {META_FILE}; not a basereward checkpoint (train one first)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise DataError(f"{path}: field format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise DataError(f"{path}: format_version {version} is newer than this library's ({FORMAT_VERSION})")
    if meta.get("paradigm", "naive") != paradigm:  # e.g. a generative judge: no head to load here
        raise DataError(
            f"{path}: a {meta.get('paradigm', 'naive')!r} reward model, not a {paradigm} one; load it with "
            "basereward.load_scorer (score, eval and serve do)"
        )
    if not isinstance(meta.get("model_type"), str):
        raise DataError(f"{path}: field model_type must be a string, got {meta.get('model_type')!r}")
    head = meta.get("head")
    if not isinstance(head, dict):
        raise DataError(f"{path}: field head must be an object, got {head!r}")
    known = {f.name for f in dataclasses.fields(HeadConfig)}
    if set(head) - known:
        raise DataError(f"{path}: field head has unknown keys {sorted(set(head) - known)}")
    for key, value in head.items():  # HeadConfig checks ranges and names, not types
        ok = {
            "layers": isinstance(value, int) and not isinstance(value, bool),
            "width": value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0),
            "activation": isinstance(value, str),
            "dropout": isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1,
        }[key]
        if not ok:
            raise DataError(f"{path}: field head.{key} has an invalid value {value!r}")
    try:
        HeadConfig(**head)
    except ValueError as e:  # "head.layers must be 1-5, got 7", "head.activation must be one of ..."
        raise DataError(f"{path}: field {e}") from None
    pooling = meta.get("pooling")
    if not isinstance(pooling, dict) or not isinstance(pooling.get("token"), str) or not pooling["token"]:
        raise DataError(f"{path}: field pooling must be an object with a non-empty token, got {pooling!r}")
    if pooling.get("rule") != POOLING_RULE:
        # the rule is what the head was trained to read: a rule this library does not implement cannot be scored
        raise DataError(
            f"{path}: field pooling.rule {pooling.get('rule')!r} is not a pooling rule this library "
            f"implements ({POOLING_RULE!r})"
        )
    adapter = meta.get("adapter")
    if adapter is not None:
        need = {"rank", "alpha", "dropout", "targets", "base_model"}
        if not isinstance(adapter, dict) or need - set(adapter):
            have = sorted(adapter) if isinstance(adapter, dict) else adapter
            raise DataError(f"{path}: field adapter must be an object with {sorted(need)}, got {have!r}")
    return meta


def _read_safetensors(path: Path, what: str) -> dict:
    """Tensors of a safetensors file; anything else (a pickle renamed, a truncated file) is refused, not read."""
    from safetensors import SafetensorError

    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} weights missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise DataError(
            f"{path}: not a readable safetensors file ({e}); only safetensors weights are loaded"
        ) from None


def _load_strict(module: nn.Module, path: Path, what: str) -> None:
    tensors = _read_safetensors(path, what)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = [
        f"{k} {tuple(tensors[k].shape)} in the file, {tuple(v.shape)} expected"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise DataError(
            f"{path}: does not fit {what} described in {META_FILE} (missing {missing}, unexpected {unexpected}"
            + (f", wrong shape {shapes}" if shapes else "")
            + ")"
        )
    module.load_state_dict(tensors)


def _adapter_base(model_dir: Path, adapter: dict, meta: dict, base_model: str | Path | None) -> Path:
    base = Path(base_model if base_model is not None else adapter["base_model"])
    if not (base / "config.json").is_file():
        hint = "" if base_model is not None else "; pass its new location as base_model= (CLI: --base-model)"
        raise FileNotFoundError(
            f"{model_dir} is a LoRA adapter checkpoint; its base model {base} is missing "
            f"(no config.json there){hint}"
        )
    if model_type_of(base) != meta["model_type"]:
        raise ValueError(
            f"{model_dir}: base model {base} is a {model_type_of(base)}, the adapters were trained on "
            f"a {meta['model_type']}"
        )
    return base


def _attach_adapter(model: RewardModel, path: Path, adapter: dict) -> None:
    """Inject the recorded adapters and fill them (and the fully trained tensors) from the adapter file; every
    adapter tensor must be in the file and every tensor in the file must land somewhere."""
    from basereward.model.lora import inject, is_lora_key, lora_settings

    tensors = _read_safetensors(path, "adapter")
    inject(model, lora_settings(adapter["rank"], adapter["alpha"], adapter["dropout"], adapter["targets"]))
    expected = model.backbone.state_dict()
    # the file holds every adapter tensor and only those base tensors that were trained in full
    missing = sorted(k for k in expected if is_lora_key(k) and k not in tensors)
    unexpected = sorted(k for k in tensors if k not in expected)
    shapes = sorted(k for k in tensors if k in expected and tensors[k].shape != expected[k].shape)
    if missing or unexpected or shapes:
        raise DataError(
            f"{path}: does not fit the base model's adapters (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {shapes[:5]})"
        )
    model.backbone.load_state_dict(tensors, strict=False)
