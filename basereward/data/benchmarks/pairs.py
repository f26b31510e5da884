"""Our own pair JSONL (`basereward.data.io`) as a benchmark: accuracy over pairs, broken down by
`meta["category"]` when present, else by `source`. Image paths are relative to the JSONL file (`--images` is not
used); the reader checks that they exist when it parses a record, and applies its own rules (the pair file's
bad-input policy is the one every loader follows)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from basereward.data.benchmarks.common import check_on_error
from basereward.data.io import LoadStats, iter_pairs
from basereward.types import PreferencePair

NAME = "pairs"


def data_files(path: str | Path) -> list[Path]:
    return [Path(path)]


def load(
    path: str | Path,
    images: str | Path | None = None,
    limit: int | None = None,
    on_error: str = "fail",
    stats: LoadStats | None = None,
) -> list[PreferencePair]:
    check_on_error(on_error)
    out: list[PreferencePair] = []
    if limit == 0:
        return out
    # check_images=False: decoding every image up front is the model scorer's job (eval's check_media), and the
    # length baseline must not read images at all.
    for p in iter_pairs(path, on_error=on_error, check_images=False, stats=stats):
        category = p.meta.get("category") or p.source or "all"
        out.append(
            dataclasses.replace(
                p, meta={**p.meta, "benchmark": NAME, "original_id": p.id, "category": category}
            )
        )
        if limit is not None and len(out) >= limit:
            break  # no record after the first N is read (nor can it fail the load)
    return out
