"""Open pair data for training and scoring, whatever its on-disk form.

`open_pairs(path)` returns a random-access sequence of `PreferencePair` (len + integer indexing):
- a pair JSONL file (`basereward.data.io`), loaded and validated up front;
- a shard folder written by `basereward data convert/build/split/decontam` (`basereward.data.shard_reader`):
  Arrow files are memory-mapped and Parquet row groups read on demand, so the set is never loaded whole;
  images come back as bytes or as paths resolved against the folder. A JSONL-format folder opens its
  `pairs.jsonl`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from basereward.data.io import LoadStats, read_pairs
from basereward.data.shard_reader import ShardedPairs, is_shard_dir
from basereward.data.shards import MANIFEST
from basereward.types import DataError, PreferencePair


def open_pairs(
    path: str | Path, *, on_error: str = "fail", stats: LoadStats | None = None
) -> Sequence[PreferencePair]:
    path = Path(path)
    if path.is_file():
        return read_pairs(path, on_error=on_error, stats=stats)
    if path.is_dir() and (path / MANIFEST).is_file():
        if json.loads((path / MANIFEST).read_text()).get("format") == "jsonl":
            return read_pairs(path / "pairs.jsonl", on_error=on_error, stats=stats)
    if is_shard_dir(path):
        # rows were validated when the folder was written; nothing is skipped here
        pairs = ShardedPairs(path)
        if stats is not None:
            stats.lines += len(pairs)
            stats.kept += len(pairs)
        return pairs
    raise DataError(f"{path}: not a pair JSONL file or a pair shard folder")
