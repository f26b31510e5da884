"""Open pair data for training and scoring, whatever its on-disk form.

`open_pairs(path)` returns a random-access sequence of `PreferencePair` (len + integer indexing):
- a pair JSONL file (`basereward.data.io`), loaded and validated up front;
- with `lazy=True`, a JSONL file is indexed instead (`JsonlPairs`): one pass validates every record (file:line errors
  or counted skips, as for a full load) and keeps only each record's byte offset; a record is parsed again when it
  is read. That is how training opens JSONL: every rank of a multi-process run reads only its own records, and the
  sequence is the same whatever the number of ranks;
- a shard folder written by `basereward data convert/build/split/decontam` (`basereward.data.shard_reader`):
  Arrow files are memory-mapped and Parquet row groups read on demand, so the set is never loaded whole;
  images come back as bytes or as paths resolved against the folder. A JSONL-format folder opens its
  `pairs.jsonl`.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Sequence
from pathlib import Path

from basereward.data.io import LoadStats, parse_record, read_pairs, scan_records, verify_images
from basereward.data.shard_reader import ShardedPairs, is_shard_dir
from basereward.data.shards import MANIFEST
from basereward.types import DataError, PreferencePair


def open_pairs(
    path: str | Path, *, on_error: str = "fail", stats: LoadStats | None = None, lazy: bool = False
) -> Sequence[PreferencePair]:
    path = Path(path)
    jsonl = path if path.is_file() else None
    if path.is_dir() and (path / MANIFEST).is_file():
        if json.loads((path / MANIFEST).read_text()).get("format") == "jsonl":
            jsonl = path / "pairs.jsonl"
    if jsonl is not None:
        if lazy:
            return JsonlPairs(jsonl, on_error=on_error, stats=stats)
        return read_pairs(jsonl, on_error=on_error, stats=stats)
    if is_shard_dir(path):
        # rows were validated when the folder was written; nothing is skipped here
        pairs = ShardedPairs(path)
        if stats is not None:
            stats.lines += len(pairs)
            stats.kept += len(pairs)
        return pairs
    raise DataError(f"{path}: not a pair JSONL file or a pair shard folder")


class JsonlPairs(Sequence):
    """A pair JSONL file as a random-access sequence that holds only byte offsets (8 bytes a record).

    Construction validates every record as `read_pairs` does, except image contents: those are checked when the
    record is read (`__getitem__` raises `DataError` naming `file:line`), so that indexing a file of millions of
    pairs does not open millions of images. `drop_ties()` filters pairs marked `meta.tie` in the same way."""

    def __init__(
        self,
        path: str | Path,
        *,
        on_error: str = "fail",
        stats: LoadStats | None = None,
        _offsets: array | None = None,
        _lines: array | None = None,
    ):
        self.path = Path(path)
        if _offsets is not None:
            self.offsets, self.lines = _offsets, _lines
            return
        self.offsets, self.lines, self._ties = array("q"), array("q"), array("b")
        for offset, lineno, pair in scan_records(
            self.path, on_error=on_error, check_images=False, stats=stats
        ):
            self.offsets.append(offset)
            self.lines.append(lineno)
            self._ties.append(1 if pair.meta.get("tie") else 0)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> PreferencePair:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        where = f"{self.path}:{self.lines[i]}"
        with self.path.open("rb") as f:
            f.seek(self.offsets[i])
            pair = parse_record(f.readline(), where=where, base_dir=self.path.parent)
        verify_images(pair)
        return pair

    def drop_ties(self) -> JsonlPairs:
        keep = [i for i, t in enumerate(self._ties) if not t]
        out = JsonlPairs(
            self.path,
            _offsets=array("q", (self.offsets[i] for i in keep)),
            _lines=array("q", (self.lines[i] for i in keep)),
        )
        out._ties = array("b", bytes(len(keep)))
        return out
