"""Exact, faster vision-tower kernels for Qwen2-VL / Qwen2.5-VL, switched on when a backbone is loaded.

Two places where the stock tower spends its time on bookkeeping rather than arithmetic once a batch holds many
images (a scoring batch, a server batch of single-sample requests):

- Patch embedding is a Conv3d whose kernel equals its stride over an input that is exactly one kernel: that is a
  matrix product. CPU Conv3d took ~7 ms for 2,048 patches here, the product ~2 ms; on some GPU/cuDNN/dtype
  combinations the conv is far slower still (vLLM made the same substitution, vllm-project/vllm#27418).
  `PatchMatmul` keeps the conv's weight Parameter, so state dicts, `save_pretrained` and optimisers see no change.
- Without flash-attention the tower runs one SDPA call per image and per window. The `runs` backend of
  `basereward.model.gpu_attention` stacks consecutive equal-length images/windows into one call.

Both are the same arithmetic, in another order: rewards agree to float rounding (tests/test_fast_vision.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchMatmul(nn.Module):
    """Drop-in for a patch-embedding Conv3d with kernel == stride, input (N, C, T, P, P) -> (N, E, 1, 1, 1)."""

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        self.weight = conv.weight  # the same Parameter: checkpoints and optimisers are unaffected
        self.bias = conv.bias
        self.out_channels = conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        y = F.linear(x.reshape(n, -1), self.weight.reshape(self.out_channels, -1), self.bias)
        return y.view(n, self.out_channels, 1, 1, 1)


def patch_conv_is_matmul(conv: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv3d)
        and tuple(conv.kernel_size) == tuple(conv.stride)
        and conv.padding in ((0, 0, 0), "valid")
        and tuple(conv.dilation) == (1, 1, 1)
        and conv.groups == 1
    )


def enable(backbone: nn.Module) -> dict:
    """Switch a loaded Qwen-VL backbone to the fast vision kernels; returns what was switched. Text backbones and
    towers already on another attention implementation (eager for debugging, flash) are left alone."""
    from basereward.model.gpu_attention import VISION_IMPL, register, set_vision_backend

    done = {"patch_matmul": False, "vision_attention": None}
    visual = getattr(backbone, "visual", None)
    if visual is None:
        return done
    embed = getattr(visual, "patch_embed", None)
    if embed is not None and patch_conv_is_matmul(getattr(embed, "proj", None)):
        embed.proj = PatchMatmul(embed.proj)
        done["patch_matmul"] = True
    vision_cfg = getattr(backbone.config, "vision_config", None)
    if vision_cfg is not None and vision_cfg._attn_implementation == "sdpa":
        register()
        set_vision_backend(backbone, "runs")
        text_impl = backbone.config.get_text_config()._attn_implementation
        backbone.set_attn_implementation({"text_config": text_impl, "vision_config": VISION_IMPL})
        done["vision_attention"] = "runs"
    return done
