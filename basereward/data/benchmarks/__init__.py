"""Benchmark loaders: one module per benchmark, each turning its official on-disk forms into `PreferencePair`s
(chosen = the preferred response) with what the metrics need in `meta`:

    meta["original_id"]  the id as in the file (pair ids get a "#k" suffix when an id repeats)
    meta["category"]     the official category/bucket (None for an uncategorised MM-RLHF row)
    vl-rewardbench:      meta["pair_key"], meta["category_by_map"], meta["human_ranking"], meta["preferred_index"]
    mm-rlhf-rewardbench: meta["group"] (the query id Acc+ is computed over)

Media are referenced, never read: a missing image fails when a scorer loads it, naming the record and the path.
"""

from __future__ import annotations

from pathlib import Path

from basereward.data.benchmarks import mm_rlhf_rewardbench, multimodal_rewardbench, pairs, vl_rewardbench
from basereward.types import PreferencePair

MODULES = {
    vl_rewardbench.NAME: vl_rewardbench,
    multimodal_rewardbench.NAME: multimodal_rewardbench,
    mm_rlhf_rewardbench.NAME: mm_rlhf_rewardbench,
    pairs.NAME: pairs,
}
BENCHMARKS = tuple(MODULES)


def _module(name: str):
    if name not in MODULES:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    return MODULES[name]


def load_benchmark(
    name: str, path: str | Path, images: str | Path | None = None, limit: int | None = None
) -> list[PreferencePair]:
    """Load benchmark `name` from `path` (a file, or the dataset's folder); `images` is the media root (default:
    the data file's folder); `limit` keeps the first N pairs in file order."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return _module(name).load(path, images=images, limit=limit)


def data_files(name: str, path: str | Path) -> list[Path]:
    """The files `path` stands for (checksummed in the report)."""
    return _module(name).data_files(path)
