"""Benchmark: scoring a benchmark's pairs merged by prompt (each distinct response once, `scoring.merge_pairs`, what
`basereward eval` does) vs one two-response sample per pair. Same rewards; the work differs where pairs share a
prompt (RM-Bench: 9 pairs and 6 responses per prompt; MM-RLHF-RewardBench: 3-5 responses per query).

    python scripts/bench_merge_pairs.py --model runs/demo/train/final \\
        --benchmark rm-bench --data tests/fixtures/benchmark-samples/rm_bench.jsonl [--repeats 3]

Last stdout line: JSON with the seconds of each (median of the repeats), the speed-up, the forward rows scored
each way, and the largest reward difference between them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--images")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--batch-size", type=int, default=8, help="samples per scorer call, as `eval --batch-size`"
    )
    args = p.parse_args()

    from basereward.data.benchmarks import load_benchmark
    from basereward.scoring import load_scorer, merge_pairs, pair_rewards

    pairs = load_benchmark(args.benchmark, args.data, images=args.images)
    scorer = load_scorer(args.model, progress=False)

    def run(samples):
        out = []
        for i in range(0, len(samples), args.batch_size):
            out += scorer(samples[i : i + args.batch_size])
        return out

    merged, where = merge_pairs(pairs)
    separate = [p.as_sample() for p in pairs]
    times = {"merged": [], "separate": []}
    for _ in range(args.repeats):
        t = time.perf_counter()
        a = pair_rewards(run(merged), where)
        times["merged"].append(time.perf_counter() - t)
        t = time.perf_counter()
        b = run(separate)
        times["separate"].append(time.perf_counter() - t)
    diff = max(abs(x - y) for (c, r), (c2, r2) in zip(a, b) for x, y in ((c, c2), (r, r2)))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "benchmark": args.benchmark,
        "pairs": len(pairs),
        "rows_merged": sum(len(s.responses) for s in merged),
        "rows_separate": 2 * len(pairs),
        "seconds_merged": med["merged"],
        "seconds_separate": med["separate"],
        "speedup": med["separate"] / med["merged"],
        "max_reward_difference": diff,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
