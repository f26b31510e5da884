"""`basereward eval`: score a reward benchmark exactly as its official script counts, and write a report.

    basereward eval --benchmark vl-rewardbench --data VL-RewardBench/ --model runs/rm --out reports/vlrb
    basereward eval --benchmark mm-rlhf-rewardbench --data mm_reward_bench.jsonl --images images/ --scorer length

load pairs -> score every pair's two responses independently (tqdm on stderr) -> official metrics (+ the length
baseline beside a model) -> report in --out -> the last stdout line is one JSON object: the headline numbers
(percent, unrounded) and counts. With `--scorer length` no image is read.

    torchrun --nproc_per_node 8 -m basereward eval --benchmark vl-rewardbench --data VL-RewardBench/ --model runs/rm

splits the pairs across the processes (eval/distributed_scoring.py); rank 0 writes the same report one process
writes, and prints the one JSON line. From Python, `evaluate(...)` takes the same options as typed arguments (and
also a ready scorer); `run(args)` only maps the command line onto it.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from basereward.config import call_with_flags
from basereward.data.benchmarks import BENCHMARKS, data_files, load_benchmark
from basereward.data.benchmarks.common import sha256_file
from basereward.data.benchmarks.vl_rewardbench import CATEGORY_MAPS
from basereward.eval.metrics import benchmark_result
from basereward.eval.report import Run, markdown_tables, write_report
from basereward.types import DataError, PreferencePair, Sample

if TYPE_CHECKING:
    from basereward.scoring import Scorer

CATEGORY_MAP_NOTES = {
    "multimodal-rewardbench": "2_get_accuracy.py buckets: Category, with safety split into bias/toxicity and "
    "reasoning into math/coding by ID prefix",
    "mm-rlhf-rewardbench": "path keyword mcq/long/short/safety/video (cal_performance_mmreweard_bench.py)",
    "pairs": "meta.category, else source",
}


def add_args(p) -> None:
    p.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    p.add_argument("--data", required=True, help="the benchmark file, or its dataset folder")
    p.add_argument(
        "--images", help="media root (default: the data file's folder); unused by --benchmark pairs"
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--model", help="a trained reward-model directory")
    who.add_argument(
        "--scorer", choices=["length"], help="built-in baseline: reward = response length in chars"
    )
    p.add_argument(
        "--out", help="report folder (metrics.json, report.md, PNG plots); none is written without it"
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


def length_scorer(samples: list[Sample]) -> list[list[float]]:
    """Reward = the response's length in characters. Reads no image: it measures a benchmark's length bias."""
    return [[float(len(r)) for r in s.responses] for s in samples]


def check_media(pairs: list[PreferencePair]) -> None:
    """Fail before hours of scoring, not in the middle: every image file and frames folder must exist."""
    from basereward.video import list_frames

    missing = []
    for p in pairs:
        missing += [
            f"{img.where}: image file not found: {img.path}"
            for img in p.images
            if img.path and not Path(img.path).is_file()
        ]
        for v in p.videos:
            if v.frames_dir is not None:
                try:
                    list_frames(v.frames_dir, v.where)
                except DataError as e:
                    missing.append(str(e))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{missing[0]}{more}; pass --images with the folder that holds the benchmark's media")


def run(args) -> dict | None:
    return call_with_flags(evaluate, args)


def evaluate(
    benchmark: str,
    data: str | Path,
    *,
    model: str | Path | None = None,
    scorer: str | Scorer | None = None,
    out: str | Path | None = None,
    images: str | Path | None = None,
    limit: int | None = None,
    category_map: str = "official",
    batch_size: int = 8,
) -> dict | None:
    """Score `benchmark` (a name in BENCHMARKS) read from `data` and return the result line of `basereward eval`.

    Exactly one of `model` (a reward-model directory, loaded here) and `scorer` (`"length"`, the built-in baseline,
    or a ready `samples -> rewards` callable such as a `RewardScorer`). A report is written to `out` when given.
    `batch_size` pairs go to each scorer call. Under torchrun every rank calls this; rank 0 returns the result,
    the others None."""
    from basereward.scoring import score_pairs

    if (model is None) == (scorer is None):
        raise ValueError("give exactly one of model= and scorer=")
    if isinstance(scorer, str) and scorer != "length":
        raise ValueError(f"unknown built-in scorer {scorer!r} (only 'length')")
    by_model = scorer != "length"

    # 1. data (loader warnings are shown and kept in the report)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = load_benchmark(benchmark, data, images=images, limit=limit)
    notes = [str(w.message) for w in caught]
    if images and benchmark == "pairs":
        notes.append("--images is ignored for --benchmark pairs (paths are relative to the JSONL file)")
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    if not pairs:
        raise DataError(f"{data}: no pairs to evaluate")
    files = data_files(benchmark, data)

    # 2. scorer. Media are checked before the process group is joined, on every rank alike, so a bad input fails
    # all ranks the same way with no collective pending. (Imported here: torch loads only once a verb runs.)
    from basereward.eval.distributed_scoring import join, score_sharded

    if by_model:
        check_media(pairs)
    ranks = join()
    if model is not None:
        from basereward.scoring import load_scorer

        # join() made cuda:LOCAL_RANK the current device, which load_scorer's default "cuda" means.
        # progress=False: this loop shows one bar in pairs; a second, nested bar from the scorer would garble it
        scorer, label = load_scorer(model, progress=False), Path(model).name or str(model)
    elif by_model:
        label = type(scorer).__name__
    else:
        scorer, label = length_scorer, "length (baseline)"

    # 3. score: each rank its share of the batches; rank 0 gets every reward back in order, the others are done
    rewards, seconds = score_sharded(
        pairs, lambda batch: score_pairs(scorer, batch), batch_size, desc=f"{benchmark} [{label}]"
    )
    if rewards is None:
        return None
    pref, rej = [c for c, _ in rewards], [r for _, r in rewards]

    # 4. metrics: the chosen map, the length baseline beside a model, and (VL-RB) every other map for comparison
    cmap = category_map
    main = Run(label, benchmark_result(benchmark, pairs, pref, rej, cmap), pref, rej)
    lengths = ([len(p.chosen) for p in pairs], [len(p.rejected) for p in pairs])
    baseline = None
    if by_model:
        lp, lr = [float(x) for x in lengths[0]], [float(x) for x in lengths[1]]
        baseline = Run("length (baseline)", benchmark_result(benchmark, pairs, lp, lr, cmap), lp, lr)
    alternatives = None
    if benchmark == "vl-rewardbench":
        alternatives = {
            m: (desc, benchmark_result(benchmark, pairs, pref, rej, m))
            for m, (_, desc) in CATEGORY_MAPS.items()
            if m != cmap
        }
        map_note = {"name": cmap, "description": CATEGORY_MAPS[cmap][1]}
    else:
        map_note = {"name": "official", "description": CATEGORY_MAP_NOTES[benchmark]}

    # 5. report
    info = {
        "scorer": "model" if by_model else "length",
        "model": str(Path(model).resolve()) if model is not None else None,
        "data": [
            {"path": str(f.resolve()), "sha256": sha256_file(f), "bytes": f.stat().st_size} for f in files
        ],
        "images": None if images is None else str(images),
        "limit": limit,
        "category_map": map_note,
        "timing": {
            "seconds": seconds,
            "pairs_per_s": len(pairs) / seconds if seconds > 0 else None,
            "world_size": ranks.world_size,
        },
        "warnings": notes,
    }
    paths = {}
    if out:
        paths = write_report(
            out,
            benchmark=benchmark,
            main=main,
            baseline=baseline,
            lengths=lengths,
            info=info,
            alternatives=alternatives,
        )
    print(markdown_tables(benchmark, [main] + ([baseline] if baseline else [])))
    if out:
        print(f"report: {paths['report.md']}")

    # 6. the result line (printed last by cli.py)
    extra = {"benchmark": benchmark, "scorer": info["scorer"], "model": info["model"]}
    if benchmark == "vl-rewardbench":
        extra["category_map"] = cmap
    timing = {"pairs_per_s": info["timing"]["pairs_per_s"], "world_size": ranks.world_size}
    return {**main.result.headline, **extra, **timing, "report": None if out is None else str(out)}
