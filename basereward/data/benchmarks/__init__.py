"""Benchmark loaders: one module per benchmark, each turning its official on-disk forms into `PreferencePair`s
(chosen = the preferred response) with what the metrics need in `meta`:

    meta["original_id"]  the id as in the file (pair ids get a "#k" suffix when an id repeats)
    meta["category"]     the official category/bucket (None for an uncategorised MM-RLHF row)
    vl-rewardbench:      meta["pair_key"], meta["category_by_map"], meta["human_ranking"], meta["preferred_index"]
    mm-rlhf-rewardbench: meta["group"] (the query id Acc+ is computed over), meta["media_path"] (as written)
    rewardbench:         meta["section"] (Chat, Chat Hard, Safety, Reasoning, or prior), category = the subset
    rm-bench:            meta["group"] (the prompt id), meta["domain"], meta["chosen_style"], meta["rejected_style"]

Media are referenced, never read: `basereward eval` checks them before scoring a model (eval/harness.py
`check_media`), and a scorer that loads a bad one fails naming the record and the path.

A loader module has `NAME`, `data_files(path) -> list[Path]` and

    load(path, images=None, limit=None, on_error="fail", stats=None) -> list[PreferencePair]

Bad input follows the one policy of pair files and `basereward score`: with `on_error="fail"` the first bad
record raises a DataError naming `file:line` (or `file row N`) and the record id; with `on_error="skip"` it is
left out and counted by cause in `stats` (a `basereward.data.io.LoadStats`). Bad records: malformed JSON, invalid
UTF-8, a record that is not an object, missing fields or wrong field types, an unknown preference label, empty
or blank responses, chosen == rejected, a prompt whose media tags do not fit the row's one medium.
`common.collect_pairs` applies the policy for a loader given its per-record `to_pair`.
"""

from __future__ import annotations

from pathlib import Path

from basereward.data.benchmarks import (
    mm_rlhf_rewardbench,
    multimodal_rewardbench,
    pairs,
    rewardbench,
    rm_bench,
    vl_rewardbench,
)
from basereward.data.benchmarks.common import check_on_error
from basereward.data.io import LoadStats
from basereward.types import PreferencePair

MODULES = {
    vl_rewardbench.NAME: vl_rewardbench,
    multimodal_rewardbench.NAME: multimodal_rewardbench,
    mm_rlhf_rewardbench.NAME: mm_rlhf_rewardbench,
    rewardbench.NAME: rewardbench,
    rm_bench.NAME: rm_bench,
    pairs.NAME: pairs,
}
BENCHMARKS = tuple(MODULES)


def _module(name: str):
    if name not in MODULES:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    return MODULES[name]


def load_benchmark(
    name: str,
    path: str | Path,
    images: str | Path | None = None,
    limit: int | None = None,
    on_error: str = "fail",
    stats: LoadStats | None = None,
) -> list[PreferencePair]:
    """Load benchmark `name` from `path` (a file, or the dataset's folder); `images` is the media root (default:
    the data file's folder); `limit` keeps the first N pairs in file order. `on_error` / `stats`: the bad-input
    policy of the module docstring."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    check_on_error(on_error)
    return _module(name).load(path, images=images, limit=limit, on_error=on_error, stats=stats)


def data_files(name: str, path: str | Path) -> list[Path]:
    """The files `path` stands for (checksummed in the report)."""
    return _module(name).data_files(path)
