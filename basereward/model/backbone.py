"""Load a backbone from a local checkpoint directory, without its LM head.

Supported: Qwen2.5-VL and Qwen2-VL (their `...Model` classes: vision tower + language model, no LM head) and any
text causal LM that `AutoModel` knows (the base model, no LM head). A downloaded Qwen2.5-VL-7B-Instruct directory and
a `basereward init-tiny` directory (either layout) load through the same code; the LM head weights in the file are
skipped.

A load is all or nothing: transformers fills a tensor it does not find in the files with fresh random values and
only says so in a report (which `quiet_transformers` silences), so a truncated download or a renamed tensor would
train on noise. `load_backbone` asks for that report and refuses any missing, unexpected (other than the LM head)
or wrongly shaped tensor. Remote code is never run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from basereward.types import DataError

VL_CLASSES = {"qwen2_5_vl": "Qwen2_5_VLModel", "qwen2_vl": "Qwen2VLModel"}


def model_type_of(model_dir: str | Path) -> str:
    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json (not a Hugging Face checkpoint directory)")
    return json.loads(cfg_path.read_text())["model_type"]


def quiet_transformers() -> None:
    """Load reports and progress bars are noise for us (the LM head is skipped on purpose)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def load_backbone(
    model_dir: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    fast_vision: bool = True,
) -> torch.nn.Module:
    """The backbone without its LM head; `fast_vision` swaps in exact faster vision kernels (`fast_vision.py`)."""
    import transformers

    quiet_transformers()
    model_type = model_type_of(model_dir)
    kw = dict(
        dtype=dtype,
        attn_implementation=attn_implementation,
        trust_remote_code=False,
        use_safetensors=True,  # never unpickle a pytorch_model.bin
        output_loading_info=True,
    )
    refuse_pickled_weights(model_dir)
    from safetensors import SafetensorError

    try:
        if model_type in VL_CLASSES:
            cls = getattr(transformers, VL_CLASSES[model_type])
            model, info = cls.from_pretrained(model_dir, **kw)
        else:
            model, info = transformers.AutoModel.from_pretrained(model_dir, **kw)
    except SafetensorError as e:  # e.g. a pickle saved under a .safetensors name
        raise DataError(f"{model_dir}: a weights file is not a readable safetensors file ({e})") from None
    check_loading_info(model_dir, info)
    model.config.use_cache = False
    if fast_vision:
        from basereward.model.fast_vision import enable

        enable(model)
    return model


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def refuse_pickled_weights(model_dir: str | Path) -> None:
    """A directory whose weights exist only as pickles (pytorch_model.bin ...) is refused by name: unpickling runs
    code from the file, and basereward reads safetensors only."""
    d = Path(model_dir)
    if any(d.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in d.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise DataError(
            f"{model_dir}: weights only as pickle files ({', '.join(pickles)}); basereward loads safetensors "
            "only (convert them with a tool you trust, e.g. save_pretrained(..., safe_serialization=True))"
        )


def check_loading_info(model_dir: str | Path, info: dict) -> None:
    """Raise DataError unless every backbone tensor came from the files and every file tensor found a place.

    The LM head (`lm_head.*`) is in a generation checkpoint but not in the backbone: expected, not an error. A
    checkpoint with tied embeddings has no `lm_head.weight` at all, which is equally fine since the backbone never
    looks for one."""
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(k for k in info.get("unexpected_keys") or [] if not k.startswith("lm_head."))
    mismatched = [
        f"{k} {tuple(a)} in the files, {tuple(b)} expected" for k, a, b in info.get("mismatched_keys") or []
    ]
    errors = list(info.get("error_msgs") or [])
    if not (missing or unexpected or mismatched or errors):
        return
    parts = []
    for label, names in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", mismatched),
        ("errors", errors),
    ):
        if names:
            shown = ", ".join(names[:8]) + (f" ... ({len(names)} in all)" if len(names) > 8 else "")
            parts.append(f"{label}: {shown}")
    raise DataError(
        f"{model_dir}: the checkpoint's tensors do not match its config.json ({'; '.join(parts)}); refusing to "
        "train or score on randomly initialised weights (an incomplete download or a renamed tensor?)"
    )


def hidden_size(backbone: torch.nn.Module) -> int:
    cfg = backbone.config
    text = getattr(cfg, "text_config", None)
    return int(getattr(text, "hidden_size", None) or cfg.hidden_size)


def vision_modules(backbone: torch.nn.Module) -> tuple[torch.nn.Module | None, torch.nn.Module | None]:
    """(vision tower without the merger, the merger/aligner); (None, None) for text backbones."""
    visual = getattr(backbone, "visual", None)
    if visual is None:
        return None, None
    return visual, getattr(visual, "merger", None)


def enable_activation_checkpointing(backbone: torch.nn.Module) -> None:
    """Recompute each decoder layer and vision block in backward (non-reentrant torch.utils.checkpoint).

    transformers also hooks every input embedding (the token embedding and the vision tower's patch embedding) to
    make its output require a gradient; reentrant checkpointing needs that, non-reentrant does not. Left in place,
    the hook puts a frozen vision tower on the gradient path: it would keep its blocks' inputs and run backward
    for nothing. So the hooks are removed."""
    if hasattr(backbone, "activation_checkpointing_enable"):  # transformers >= 5.23
        backbone.activation_checkpointing_enable({"use_reentrant": False})
    else:  # the older name, which vLLM's transformers range still has
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    backbone.disable_input_require_grads()
