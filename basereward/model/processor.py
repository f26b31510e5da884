"""Processors for the VL backbones without torchvision.

transformers 5.x type-checks every sub-processor named in a processor's __init__, and Qwen's video processor needs
torchvision (which cannot be installed on the CPU stack, see docs/environment.md §3). These subclasses drop
the video processor; video inputs are built from PIL frames in `basereward.video` instead. Always construct the
processor explicitly: without torchvision `AutoProcessor.from_pretrained(dir)` fails (it cannot build the video
processor).
"""

from __future__ import annotations

from pathlib import Path

from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor


class _NoVideoProcessor:
    """Mixed in before a Qwen processor: the same processor with no video sub-processor."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        kwargs.pop("video_processor", None)
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            chat_template=chat_template,
            **kwargs,
        )


class ImageOnlyQwen2_5_VLProcessor(_NoVideoProcessor, Qwen2_5_VLProcessor):
    pass


class ImageOnlyQwen2VLProcessor(_NoVideoProcessor, Qwen2VLProcessor):
    pass


def image_only_processor_class(model_type: str):
    return {"qwen2_5_vl": ImageOnlyQwen2_5_VLProcessor, "qwen2_vl": ImageOnlyQwen2VLProcessor}[model_type]


def load_processor(
    model_dir: str | Path, model_type: str, max_pixels: int | None = None, min_pixels: int | None = None
):
    """The processor for a checkpoint directory: the image-only VL processor, or the tokenizer for text backbones.

    `max_pixels`/`min_pixels` override the checkpoint's image resolution bounds (the recipe hint is 501,760 =
    640 merged tokens); None keeps what the directory says.
    """
    from transformers import AutoTokenizer

    if model_type not in ("qwen2_5_vl", "qwen2_vl"):
        return AutoTokenizer.from_pretrained(model_dir)
    proc = image_only_processor_class(model_type).from_pretrained(model_dir)
    set_pixel_bounds(proc, max_pixels, min_pixels)
    return proc


def set_pixel_bounds(processor, max_pixels: int | None, min_pixels: int | None = None) -> None:
    """transformers 5.x keeps the bounds in `size` (longest_edge = max pixels, shortest_edge = min pixels)."""
    ip = getattr(processor, "image_processor", None)
    if ip is None:
        return
    if max_pixels is not None:
        ip.size = {**dict(ip.size), "longest_edge": int(max_pixels)}
    if min_pixels is not None:
        ip.size = {**dict(ip.size), "shortest_edge": int(min_pixels)}


def save_processor(processor, out_dir: str | Path) -> None:
    """Save so that other tools can load the directory too: record the upstream processor class name."""
    import json

    processor.save_pretrained(out_dir)
    cfg_path = Path(out_dir) / "processor_config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        cls = cfg.get("processor_class", "")
        if cls.startswith("ImageOnly"):
            cfg["processor_class"] = cls.removeprefix("ImageOnly")
            cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
