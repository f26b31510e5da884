"""One benchmark process: `python -m basereward.bench.worker < spec.json`.

Reads a spec (what to run, on which model and workload), builds the model and the encoded data (not timed), runs
each requested variant (warm-up then timed steps) and prints one JSON record per variant on stdout. With
`record_gates` it also saves the first step's rewards / loss / gradients (before any optimizer update) to
`gates_dir/<variant>.pt` for the parent's correctness gates. Peak RSS is this process's `ru_maxrss`, so it is only
meaningful when the process runs a single variant (the benchmark's fresh-subprocess mode).
"""

from __future__ import annotations

import json
import math
import resource
import sys
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


def main() -> int:
    from basereward.bench.common import RECORD

    spec = json.loads(sys.stdin.read())
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec.get("seed", 0))
    from basereward.model.backbone import quiet_transformers

    quiet_transformers()
    if spec["kind"] == "train":
        from basereward.bench.train_bench import run_variant
    else:
        from basereward.bench.score_bench import run_variant
    for variant in spec["variants"]:
        try:
            rec = run_variant(variant, spec)
        except Exception as e:  # fail soft: the parent reports the error next to the other variants' numbers
            import traceback

            rec = {"variant": variant, "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}"}
        rec.setdefault("peak_rss_mb", peak_rss_mb() if len(spec["variants"]) == 1 else None)
        print(RECORD + json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
