"""One benchmark, scored as its official script counts: the function behind `basereward eval` and `eval --suite`.

load pairs (the bad-input policy) -> check media -> score every pair's two responses independently (sharded
under torchrun) -> official metrics under the tie policy (+ the length baseline beside a model) -> report in
`out` (metrics.json, report.md, report.html, PNG plots) -> the result line: the headline numbers (percent,
unrounded) and counts. With the length scorer no image is read.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from basereward.data.benchmarks import data_files, load_benchmark
from basereward.data.benchmarks.common import sha256_file
from basereward.data.benchmarks.vl_rewardbench import CATEGORY_MAPS
from basereward.data.io import LoadStats
from basereward.eval.metrics import benchmark_result
from basereward.eval.report import Run, markdown_tables, write_report
from basereward.types import DataError, PreferencePair, Sample

if TYPE_CHECKING:
    from basereward.scoring import Scorer

CATEGORY_MAP_NOTES = {
    "multimodal-rewardbench": "2_get_accuracy.py buckets: Category, with safety split into bias/toxicity and "
    "reasoning into math/coding by ID prefix",
    "mm-rlhf-rewardbench": "path keyword mcq/long/short/safety/video (cal_performance_mmreweard_bench.py)",
    "rewardbench": "subset -> section by rewardbench/constants.py SUBSET_MAPPING; a section is the EXAMPLE_COUNTS-"
    "weighted mean of its subsets (math-prm 984 vs 6 x 164 hep-*); prior sets reported apart, not in Score",
    "rm-bench": "domain, safety-refuse + safety-response pooled as safety (scripts/utils.py); 3x3 style matrix "
    "per domain, Hard = chosen less styled than rejected",
    "pairs": "meta.category, else source",
}


def length_scorer(samples: list[Sample]) -> list[list[float]]:
    """Reward = the response's length in characters. Reads no image: it measures a benchmark's length bias."""
    return [[float(len(r)) for r in s.responses] for s in samples]


def _media_error(p: PreferencePair) -> DataError | None:
    from basereward.types import ImageRef
    from basereward.video import NUM_FRAMES, list_frames, sample_indices

    try:
        for img in p.images:
            img.verify()
        for v in p.videos:
            if v.frames_dir is not None:
                files = list_frames(v.frames_dir, v.where)
                for i in sorted(set(sample_indices(len(files), NUM_FRAMES))):  # the frames scoring reads
                    ImageRef(path=str(files[i]), where=v.where).verify()
    except DataError as e:
        return e
    return None


def check_media(
    pairs: list[PreferencePair], on_error: str = "fail", stats: LoadStats | None = None
) -> list[PreferencePair]:
    """Fail before hours of scoring, not in the middle: every image must pass the one image check
    (`ImageRef.verify`: the file exists, decodes completely, and its header is within MAX_IMAGE_PIXELS, so a
    decompression bomb is refused before its pixels are allocated), and every video's frames folder must hold
    the frames scoring samples, each passing the same check. "fail": one DataError naming the first bad record
    (and how many more); "skip": the pairs kept, each bad one counted by cause in `stats`."""
    import concurrent.futures
    import os

    # decoding releases the GIL, so a few threads cut the check of a 1k-image benchmark several-fold
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        errors = list(pool.map(_media_error, pairs))
    bad = [e for e in errors if e is not None]
    if bad and on_error == "fail":
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        hint = ""
        if any("not found" in str(e) for e in bad):
            hint = "; pass --images with the folder that holds the benchmark's media"
        raise DataError(f"{bad[0]}{more}{hint}")
    for e in bad:
        if stats is not None:
            stats.skip(e)
    if stats is not None:
        stats.kept -= len(bad)
    return [p for p, e in zip(pairs, errors) if e is None]


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
    on_error: str = "fail",
    ties: str = "wrong",
    name: str | None = None,
    source: str | Path | None = None,
) -> dict | None:
    """Score `benchmark` (a name in BENCHMARKS) read from `data` and return the result line of `basereward eval`.

    Exactly one of `model` (a reward-model directory, loaded here) and `scorer` (`"length"`, the built-in baseline,
    or a ready `samples -> rewards` callable such as a `RewardScorer`). A report is written to `out` when given.
    `batch_size` pairs go to each scorer call. `on_error`: a bad record (or, for a model, a bad image) stops the
    run ("fail") or is left out and counted by cause in the result's `skipped` / `skipped_by_reason` ("skip").
    `ties`: the tie policy (basereward.eval.tally), stated in the report and the result line. `name` labels the
    scorer in the report (default: the model directory's name); `source` is the directory a ready `scorer` was
    loaded from, recorded as the model in the report and the result line. Under torchrun every rank calls this; rank 0 returns the result, the others None."""
    from basereward.scoring import merge_pairs, pair_rewards

    if (model is None) == (scorer is None):
        raise ValueError("give exactly one of model= and scorer=")
    if isinstance(scorer, str) and scorer != "length":
        raise ValueError(f"unknown built-in scorer {scorer!r} (only 'length')")
    by_model = scorer != "length"

    # 1. data (loader warnings are shown and kept in the report)
    stats = LoadStats()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = load_benchmark(benchmark, data, images=images, limit=limit, on_error=on_error, stats=stats)
    notes = [str(w.message) for w in caught]
    if images and benchmark == "pairs":
        notes.append("--images is ignored for --benchmark pairs (paths are relative to the JSONL file)")
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    files = data_files(benchmark, data)

    # 2. scorer. Media are checked before the process group is joined, on every rank alike, so a bad input fails
    # (or is skipped) on all ranks the same way with no collective pending. (Imported here: torch loads only
    # once a verb runs.)
    from basereward.eval.distributed_scoring import join, score_sharded

    if by_model:
        pairs = check_media(pairs, on_error, stats)
    if stats.n_skipped:
        skips = ", ".join(f"{k}: {v}" for k, v in sorted(stats.skipped.items()))
        notes.append(f"skipped {stats.n_skipped} bad record(s) (--on-error skip): {skips}")
        print(f"warning: {notes[-1]}", file=sys.stderr)
    if not pairs:
        raise DataError(f"{data}: no pairs to evaluate")
    ranks = join()
    if model is not None:
        from basereward.scoring import load_scorer

        # join() made cuda:LOCAL_RANK the current device, which load_scorer's default "cuda" means.
        # progress=False: this loop shows one bar in pairs; a second, nested bar from the scorer would garble it
        scorer, label = load_scorer(model, progress=False), name or Path(model).name or str(model)
    elif by_model:
        label = name or type(scorer).__name__
    else:
        scorer, label = length_scorer, "length (baseline)"

    # 3. score: each rank its share of the batches; rank 0 gets every reward back in order, the others are done
    # pairs that share a prompt are scored as one sample of its distinct responses (merge_pairs: RM-Bench's 9
    # pairs per prompt are 6 responses), so a batch is `batch_size` prompts
    samples, where = merge_pairs(pairs)
    # a generative judge counts its calls, order agreement and ties; a critic its critiques and generated tokens
    kind = next((k for k in ("judge", "critic") if hasattr(scorer, f"{k}_stats")), None)
    counter = getattr(scorer, f"{kind}_stats") if kind else None
    before = counter() if counter else None
    rewards, seconds = score_sharded(
        samples, scorer, batch_size, desc=f"{benchmark} [{label}]", noun="prompt"
    )
    work = {kind: counter(across_ranks=True, since=before)} if counter else {}  # a collective: every rank
    if rewards is None:
        return None
    pref, rej = map(list, zip(*pair_rewards(rewards, where)))

    # 4. metrics: the chosen map, the length baseline beside a model, and (VL-RB) every other map for comparison
    cmap = category_map
    main = Run(label, benchmark_result(benchmark, pairs, pref, rej, cmap, ties), pref, rej)
    lengths = ([len(p.chosen) for p in pairs], [len(p.rejected) for p in pairs])
    baseline = None
    if by_model:
        lp, lr = [float(x) for x in lengths[0]], [float(x) for x in lengths[1]]
        baseline = Run("length (baseline)", benchmark_result(benchmark, pairs, lp, lr, cmap, ties), lp, lr)
    alternatives = None
    if benchmark == "vl-rewardbench":
        alternatives = {
            m: (desc, benchmark_result(benchmark, pairs, pref, rej, m, ties))
            for m, (_, desc) in CATEGORY_MAPS.items()
            if m != cmap
        }
        map_note = {"name": cmap, "description": CATEGORY_MAPS[cmap][1]}
    else:
        map_note = {"name": "official", "description": CATEGORY_MAP_NOTES[benchmark]}

    # 5. report
    info = {
        "scorer": "model" if by_model else "length",
        "model": str(Path(model if model is not None else source).resolve()) if (model or source) else None,
        "data": [
            {"path": str(f.resolve()), "sha256": sha256_file(f), "bytes": f.stat().st_size} for f in files
        ],
        "images": None if images is None else str(images),
        "limit": limit,
        "category_map": map_note,
        "tie_policy": ties,
        "judge": work.get("judge"),
        "critic": work.get("critic"),
        "timing": {
            "seconds": seconds,
            "pairs_per_s": len(pairs) / seconds if seconds > 0 else None,
            "world_size": ranks.world_size,
        },
        "warnings": notes,
        "skipped": stats.n_skipped,
        "skipped_by_reason": dict(stats.skipped),
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
            pairs=pairs,
        )
    print(markdown_tables(benchmark, [main] + ([baseline] if baseline else [])))
    if out:
        print(f"report: {paths['report.md']}")

    # 6. the result line (printed last by cli.py)
    extra = {"benchmark": benchmark, "scorer": info["scorer"], "model": info["model"], "tie_policy": ties}
    if benchmark == "vl-rewardbench":
        extra["category_map"] = cmap
    timing = {"pairs_per_s": info["timing"]["pairs_per_s"], "world_size": ranks.world_size}
    skips = {"skipped": info["skipped"], "skipped_by_reason": info["skipped_by_reason"]}
    extra.update(work)
    return {**main.result.headline, **extra, **timing, **skips, "report": None if out is None else str(out)}
