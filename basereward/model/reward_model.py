"""RewardModel = backbone + RewardHead, and its checkpoint directory.

The backbone runs without an LM head; the head reads the final hidden state at each reward's scored token (the
`<|im_end|>` closing the response, see `basereward.template`). A checkpoint directory holds:

    config.json, model.safetensors      the backbone in Hugging Face layout (loadable on its own)
    head.safetensors                    the reward head
    tokenizer / processor files         everything `load_processor` needs
    basereward.json                     head config, pooling rule, reward mean/std, library versions

Only safetensors and JSON are read back: nothing is unpickled.
"""

from __future__ import annotations

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

META_FILE = "basereward.json"
HEAD_FILE = "head.safetensors"
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

    @classmethod
    def from_backbone(cls, model_dir: str | Path, head_cfg: HeadConfig = HeadConfig(), *, seed: int = 0,
                      dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa") -> RewardModel:  # fmt: skip
        """A new reward model: pretrained backbone from `model_dir`, newly initialised head (seeded)."""
        backbone = load_backbone(model_dir, dtype=dtype, attn_implementation=attn_implementation)
        gen = torch.random.fork_rng()
        with gen:
            torch.manual_seed(seed)
            head = RewardHead(hidden_size(backbone), head_cfg)
        return cls(backbone, head, model_type_of(model_dir))

    def forward(self, batch: Batch) -> torch.Tensor:
        """Rewards (N,) in fp32, one per response, in the batch's reward order."""
        inputs = batch.model_inputs()
        if batch.position_shift is not None:
            inputs["position_ids"] = self.shared_position_ids(batch)
            if self.backbone.config._attn_implementation == "eager":  # eager adds the mask to the scores
                inputs["attention_mask"] = torch.zeros(batch.attention_mask.shape, dtype=self.dtype_of_compute(),
                    device=batch.attention_mask.device).masked_fill(~batch.attention_mask, torch.finfo(
                    self.dtype_of_compute()).min)  # fmt: skip
        if getattr(self, "attention_adapter", None) is not None:  # GPU: basereward.model.gpu_attention.enable
            inputs = self.attention_adapter(batch, inputs)
        out = self.backbone(**inputs, use_cache=False)
        h = out.last_hidden_state[batch.score_rows, batch.score_cols]
        # The head runs in fp32 whatever the backbone dtype: it is tiny and rewards feed a sigmoid.
        with torch.autocast(device_type=h.device.type, enabled=False):
            return self.head.float()(h.float())

    def shared_position_ids(self, batch: Batch) -> torch.Tensor:
        """Positions for the prefix-shared layout: the row's positions as if it were one sequence (mRoPE for VL
        backbones, so image tokens get their 2-D grid positions), minus `position_shift` so every response restarts
        right after the prompt. Exact because responses are text: their three mRoPE axes advance together."""
        valid = batch.valid_mask
        if self.model_type in ("qwen2_5_vl", "qwen2_vl"):
            extra = (
                {"second_per_grid_ts": batch.second_per_grid_ts} if self.model_type == "qwen2_5_vl" else {}
            )
            pos, _ = self.backbone.get_rope_index(batch.input_ids, batch.mm_token_type_ids,
                image_grid_thw=batch.image_grid_thw, video_grid_thw=batch.video_grid_thw, attention_mask=valid,
                **extra)  # fmt: skip
            return (pos - batch.position_shift[None]).masked_fill(valid[None] == 0, 1)
        return ((valid.cumsum(-1) - 1) - batch.position_shift).masked_fill(valid == 0, 1)

    def dtype_of_compute(self) -> torch.dtype:
        return next(self.backbone.parameters()).dtype

    def save(self, out_dir: str | Path, processor=None) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(out, safe_serialization=True)
        save_file({k: v.detach().float().contiguous().cpu() for k, v in self.head.state_dict().items()},
                  str(out / HEAD_FILE))  # fmt: skip
        if processor is not None:
            from basereward.model.processor import save_processor

            save_processor(processor, out)
        (out / META_FILE).write_text(json.dumps(self.metadata(), indent=2) + "\n")
        return out

    def metadata(self) -> dict:
        import transformers

        return {
            "format_version": FORMAT_VERSION,
            "model_type": self.model_type,
            "head": self.head.cfg.to_dict(),
            "hidden_size": hidden_size(self.backbone),
            "pooling": {"rule": POOLING_RULE, "token": self.pool_token},
            "reward_stats": self.reward_stats,
            "versions": {
                "basereward": _own_version(),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "python": platform.python_version(),
            },
        }


def _own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("basereward")
    except PackageNotFoundError:
        return "unknown"


def load_reward_model(model_dir: str | Path, *, dtype: torch.dtype = torch.float32, device: str | None = None,
                      attn_implementation: str = "sdpa", max_pixels: int | None = None):  # fmt: skip
    """Load a trained reward model directory. Returns `(model, processor)`, the model in eval mode."""
    from basereward.model.processor import load_processor

    model_dir = Path(model_dir)
    meta_path = model_dir / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{model_dir}: no {META_FILE}; not a basereward checkpoint (train one first)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{meta_path}: format_version {meta['format_version']} is newer than this library's")
    backbone = load_backbone(model_dir, dtype=dtype, attn_implementation=attn_implementation)
    head = RewardHead(hidden_size(backbone), HeadConfig(**meta["head"]))
    head.load_state_dict(load_file(str(model_dir / HEAD_FILE)))
    model = RewardModel(backbone, head, meta["model_type"], meta["pooling"]["token"])
    model.reward_stats = meta.get("reward_stats")
    if device is not None:
        model.to(device)
    model.eval()
    return model, load_processor(model_dir, meta["model_type"], max_pixels=max_pixels)
