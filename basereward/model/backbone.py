"""Load a backbone from a local checkpoint directory, without its LM head.

Supported: Qwen2.5-VL and Qwen2-VL (their `...Model` classes: vision tower + language model, no LM head) and any
text causal LM that `AutoModel` knows (the base model, no LM head). A downloaded Qwen2.5-VL-7B-Instruct directory and
a `basereward init-tiny` directory load through the same code; the LM head weights in the file are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

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
    kw = dict(dtype=dtype, attn_implementation=attn_implementation, trust_remote_code=False)
    if model_type in VL_CLASSES:
        cls = getattr(transformers, VL_CLASSES[model_type])
        model = cls.from_pretrained(model_dir, **kw)
    else:
        model = transformers.AutoModel.from_pretrained(model_dir, **kw)
    model.config.use_cache = False
    if fast_vision:
        from basereward.model.fast_vision import enable

        enable(model)
    return model


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
