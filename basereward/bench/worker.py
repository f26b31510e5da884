"""One benchmark process: `python -m basereward.bench.worker < spec.json`.

Reads a spec (what to run, on which model and workload), builds the model and the encoded data (not timed), runs
each requested variant (warm-up then timed steps) and prints one JSON record per variant on stdout. With
`record_gates` it also saves the first step's rewards / loss / gradients (before any optimizer update) to
`gates_dir/<variant>.pt` for the parent's correctness gates. Peak RSS is this process's `ru_maxrss`, so it is only
meaningful when the process runs a single variant (the benchmark's fresh-subprocess mode).
"""

from __future__ import annotations

import json
import sys

from basereward.bench.runtime import peak_rss_mb


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
