"""Our own pair JSONL (`basereward.data.io`) as a benchmark: accuracy over pairs, broken down by
`meta["category"]` when present, else by `source`. Image paths are relative to the JSONL file (`--images` is not
used); the reader checks that they exist when it parses a record."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from basereward.data.io import read_pairs
from basereward.types import PreferencePair

NAME = "pairs"


def data_files(path: str | Path) -> list[Path]:
    return [Path(path)]


def load(
    path: str | Path, images: str | Path | None = None, limit: int | None = None
) -> list[PreferencePair]:
    # check_images=False: decoding every image up front is the model scorer's job, and the length baseline must
    # not read images at all.
    pairs = read_pairs(path, check_images=False)
    if limit is not None:
        pairs = pairs[:limit]
    out = []
    for p in pairs:
        category = p.meta.get("category") or p.source or "all"
        out.append(
            dataclasses.replace(
                p, meta={**p.meta, "benchmark": NAME, "original_id": p.id, "category": category}
            )
        )
    return out
