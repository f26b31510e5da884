"""What a benchmark process needs at run time: memory readings, the bench model and encoder, and the correctness
gates' recorder. Shared by the variants (`train_bench`, `score_bench`, `trl_peer`) and the process entry
(`worker`), which sits above them.
"""

from __future__ import annotations

import math
import resource
from pathlib import Path


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def load_model(model_dir: str, seed: int):
    """The bench RewardModel: checkpoint backbone, reward head re-drawn at 1/sqrt(fan_in) so rewards are O(1) and
    relative differences in the gates are meaningful."""
    import torch

    from basereward.model.reward_model import RewardModel

    model = RewardModel.from_backbone(model_dir, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.head.parameters():
            fan_in = p.shape[-1] if p.ndim > 1 else p.shape[0]
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
    return model


def load_encoder(model_dir: str, max_pixels: int):
    from basereward.model.processor import load_processor
    from basereward.template import Encoder

    return Encoder(load_processor(model_dir, "qwen2_5_vl", max_pixels=max_pixels), "qwen2_5_vl")


def save_gate(spec: dict, variant: str, rewards, loss=None, grads: dict | None = None) -> None:
    import torch

    if not spec.get("record_gates"):
        return
    rec = {"rewards": rewards.detach().float().cpu()}
    if loss is not None:
        rec["loss"] = float(loss)
    if grads is not None:
        rec["grads"] = grads
    Path(spec["gates_dir"]).mkdir(parents=True, exist_ok=True)
    torch.save(rec, Path(spec["gates_dir"]) / f"{variant}.pt")
