"""`basereward eval`: score a reward benchmark exactly as its official script counts, and write a report; or the
paper's whole table (five benchmarks, one row per model) with `--suite paper`.

    basereward eval --benchmark vl-rewardbench --data VL-RewardBench/ --model runs/rm --out reports/vlrb
    basereward eval --benchmark mm-rlhf-rewardbench --data mm_reward_bench.jsonl --images images/ --scorer length
    basereward eval --suite paper --data-root benchmarks/ --model runs/a/final --model runs/b/final --out reports/

One benchmark: load pairs -> score every pair's two responses independently (tqdm on stderr) -> official metrics
under the tie policy (+ the length baseline beside a model) -> report in --out (metrics.json, report.md, the
self-contained report.html, PNG plots) -> the last stdout line is one JSON object: the headline numbers (percent,
unrounded) and counts. With `--scorer length` no image is read. The suite: eval/suite.py.

    torchrun --nproc_per_node 8 -m basereward eval --benchmark vl-rewardbench --data VL-RewardBench/ --model runs/rm

splits the pairs across the processes (eval/distributed_scoring.py); rank 0 writes the same report one process
writes, and prints the one JSON line. From Python, `basereward.eval.harness.evaluate(...)` and
`basereward.eval.suite.run_suite(...)` take the same options as typed arguments; `run(args)` only maps the
command line onto one of them.
"""

from __future__ import annotations

from basereward.config import ConfigError, call_with_flags
from basereward.data.benchmarks import BENCHMARKS
from basereward.data.benchmarks.vl_rewardbench import CATEGORY_MAPS
from basereward.eval.harness import evaluate
from basereward.eval.suite import SUITES, run_suite
from basereward.eval.tally import TIE_POLICIES


def add_args(p) -> None:
    p.add_argument("--benchmark", choices=BENCHMARKS, help="the benchmark to score (with --data)")
    p.add_argument("--data", help="the benchmark file, or its dataset folder")
    p.add_argument(
        "--suite", choices=SUITES, help="every benchmark of the paper's table found under --data-root"
    )
    p.add_argument(
        "--data-root", help="with --suite: one folder per benchmark, named as --benchmark names it"
    )
    p.add_argument(
        "--images", help="media root (default: the data file's folder); unused by --benchmark pairs"
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--model",
        action="append",
        help="a trained reward-model directory; with --suite, repeat it for one row per model",
    )
    who.add_argument(
        "--scorer", choices=["length"], help="built-in baseline: reward = response length in chars"
    )
    p.add_argument(
        "--out",
        help="report folder (metrics.json, report.md, report.html, plots); none is written without it",
    )
    p.add_argument("--limit", type=int, help="score only the first N pairs (a quick look)")
    p.add_argument(
        "--category-map",
        default="official",
        choices=sorted(CATEGORY_MAPS),
        help="VL-RewardBench grouping (official = the only split comparable across papers); all maps are "
        "reported in --out either way",
    )
    p.add_argument("--batch-size", type=int, default=8, help="samples per scorer call")
    p.add_argument(
        "--on-error", default="fail", choices=["fail", "skip"], help="bad records: fail or skip+count"
    )
    p.add_argument(
        "--ties",
        default="wrong",
        choices=TIE_POLICIES,
        help="a tie counts wrong (MM-RLHF, RewardBench, RM-Bench official), half (the expectation of a coin "
        "flip), or is dropped from the denominators (VL-RewardBench's cal.py); see docs/benchmarks.md",
    )


def run(args) -> dict | None:
    if args.suite:
        if args.benchmark or args.data or args.images:
            raise ConfigError(
                "--suite reads every benchmark from --data-root: drop --benchmark/--data/--images"
            )
        if not args.data_root:
            raise ConfigError("--suite needs --data-root (one folder per benchmark)")
        return call_with_flags(run_suite, args, models=args.model)
    if args.data_root:
        raise ConfigError("--data-root goes with --suite; one benchmark takes --benchmark and --data")
    if not (args.benchmark and args.data):
        raise ConfigError("give --benchmark and --data (or --suite paper --data-root ROOT)")
    if args.model and len(args.model) > 1:
        raise ConfigError("one --model per benchmark; compare several with --suite paper")
    return call_with_flags(evaluate, args, model=args.model[0] if args.model else None)
