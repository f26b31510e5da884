"""Reading pair shard folders (layout and schema: basereward/data/shards.py) without loading them: streaming
batch iteration, random access to one row, and `take` of arbitrary rows. Arrow files are memory-mapped (zero
copy); Parquet row groups are read on demand (two cached), so random rows from Parquet cost a row group each
(~480x an Arrow row: numbers, and why this reader rather than `datasets.load_from_disk`, in shards.py).
Every batch comes back with SCHEMA's columns: one of a folder written before the critique columns existed gets
them as nulls, so old and new folders read, `take` and re-write alike (and mix in one build).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from basereward.data.shards import MANIFEST, SCHEMA, add_missing_columns, row_to_pair
from basereward.types import DataError, PreferencePair


def is_shard_dir(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (
        (path / MANIFEST).is_file() or any(path.glob("*.parquet")) or any(path.glob("*.arrow"))
    )


class ShardDir:
    """A shard folder opened for reading: batch iteration (streaming), random access to record batches
    (Arrow: zero-copy from a memory map; Parquet: one row group, cached) and `take` of arbitrary rows."""

    def __init__(self, path: str | Path, *, release_every: int | None = None):
        """`release_every`: unmap after `take` has gathered this many bytes, so pages a long pass touched stop
        counting in RSS (the mixture sets it; random access for training does not need it)."""
        self.path = Path(path)
        self.release_every, self._taken = release_every, 0
        self.manifest = (
            json.loads((self.path / MANIFEST).read_text()) if (self.path / MANIFEST).is_file() else {}
        )
        self.fmt, self.files = self._find_files()
        self._open: dict[int, object] = {}
        self._cache: dict[int, pa.RecordBatch] = {}
        sizes, self._batch_file, self._file_row0, self._file_batch0 = [], [], [], []
        for fi in range(len(self.files)):
            self._file_row0.append(sum(sizes))
            self._file_batch0.append(len(sizes))
            for n in self._batch_sizes(fi):
                sizes.append(n)
                self._batch_file.append(fi)
        self._starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.num_rows = int(self._starts[-1])
        self.release()

    def _find_files(self) -> tuple[str, list[Path]]:
        if self.manifest.get("format") == "jsonl":
            raise DataError(
                f"{self.path}: a JSONL dataset (open {self.path / 'pairs.jsonl'} with read_pairs)"
            )
        if self.manifest:
            files = [self.path / f["name"] for f in self.manifest["files"]]
            return self.manifest["format"], files
        for fmt in ("parquet", "arrow"):
            files = sorted(self.path.glob(f"*.{fmt}"))
            if files:
                return fmt, files
        raise DataError(f"{self.path}: not a pair shard folder (no {MANIFEST}, *.parquet or *.arrow)")

    def _file(self, fi: int):
        if fi not in self._open:
            f = str(self.files[fi])
            try:
                if self.fmt == "parquet":
                    self._open[fi] = pq.ParquetFile(f, memory_map=True)
                    schema = self._open[fi].schema_arrow
                else:
                    table = pa.ipc.open_stream(pa.memory_map(f, "r")).read_all()
                    schema = table.schema
                    # the appended null columns are small; every other buffer stays memory-mapped
                    self._open[fi] = [add_missing_columns(b) for b in table.to_batches()]
            except (OSError, pa.ArrowException) as e:
                raise DataError(f"{f}: unreadable {self.fmt} shard: {e}") from e
            missing = [n for n in ("id", "prompt", "images", "chosen", "rejected") if n not in schema.names]
            if missing:
                raise DataError(
                    f"{f}: not a pair shard (missing column {missing[0]!r}); "
                    "convert it with `basereward data convert`"
                )
        return self._open[fi]

    def _batch_sizes(self, fi: int) -> list[int]:
        f = self._file(fi)
        if self.fmt == "parquet":
            return [f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)]
        return [b.num_rows for b in f]

    def release(self) -> None:
        """Unmap files and drop caches (memory-mapped pages touched so far stop counting in RSS)."""
        self._open.clear()
        self._cache.clear()

    def __getstate__(self) -> dict:  # DataLoader workers re-open the files themselves
        state = dict(self.__dict__)
        state["_open"], state["_cache"] = {}, {}
        return state

    @property
    def num_batches(self) -> int:
        return len(self._batch_file)

    def batch(self, b: int) -> pa.RecordBatch:
        fi = self._batch_file[b]
        local = b - self._file_batch0[fi]
        if self.fmt == "arrow":
            return self._file(fi)[local]
        if b not in self._cache:
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            table = self._file(fi).read_row_group(local)
            self._cache[b] = add_missing_columns(
                table.combine_chunks().to_batches()[0]
                if table.num_rows
                else pa.RecordBatch.from_pylist([], schema=table.schema)
            )
        return self._cache[b]

    def locate(self, i: int) -> tuple[int, int]:
        """Global row -> (batch, row in batch)."""
        if not 0 <= i < self.num_rows:
            raise IndexError(f"row {i} out of range for {self.num_rows} rows in {self.path}")
        b = bisect.bisect_right(self._starts, i) - 1
        return b, i - int(self._starts[b])

    def where(self, i: int) -> str:
        b, _ = self.locate(i)
        fi = self._batch_file[b]
        return f"{self.files[fi]} row {i - self._file_row0[fi]}"

    def iter_batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        for b in range(self.num_batches):
            batch = self.batch(b)
            yield batch.select(columns) if columns else batch

    def take(self, indices: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """Rows at `indices` (any order, repeats allowed), in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns])
        if len(indices) == 0:
            return schema.empty_table()
        order = np.argsort(indices, kind="stable")
        ordered = indices[order]
        if ordered[0] < 0 or ordered[-1] >= self.num_rows:
            raise IndexError(f"take: index out of range for {self.num_rows} rows in {self.path}")
        batch_of = np.searchsorted(self._starts, ordered, side="right") - 1
        cuts = np.flatnonzero(np.diff(batch_of)) + 1
        pieces = []
        for lo, hi in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(ordered)]])):
            b = int(batch_of[lo])
            batch = self.batch(b)
            batch = batch.select(columns) if columns else batch
            pieces.append(batch.take(pa.array(ordered[lo:hi] - self._starts[b])))
        table = pa.Table.from_batches(pieces, schema=pieces[0].schema)
        if not np.all(order[1:] > order[:-1]):  # put rows back in the asked order
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
            table = table.take(pa.array(inverse))
        self._taken += table.nbytes
        if self.release_every is not None and self._taken > self.release_every:
            self.release()
            self._taken = 0
        return table


class ShardedPairs(Sequence):
    """`Sequence[PreferencePair]` over a shard folder: len, and indexing that decodes one row. Images come
    back as bytes or as paths resolved against the folder; nothing else is loaded. `rows` makes it a view on
    a subset of the folder's rows (see `drop_ties`)."""

    def __init__(self, path: str | Path, rows: np.ndarray | None = None):
        self.shards = ShardDir(path)
        self.rows = rows

    def __len__(self) -> int:
        return self.shards.num_rows if self.rows is None else len(self.rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        i = i + len(self) if i < 0 else i
        if self.rows is not None:
            if not 0 <= i < len(self.rows):
                raise IndexError(f"row {i} out of range for {len(self.rows)} rows")
            i = int(self.rows[i])
        b, j = self.shards.locate(i)
        row = self.shards.batch(b).slice(j, 1).to_pylist()[0]
        return row_to_pair(row, self.shards.path, self.shards.where(i))

    def __iter__(self) -> Iterator[PreferencePair]:
        if self.rows is not None:
            yield from (self[k] for k in range(len(self)))
            return
        i = 0
        for batch in self.shards.iter_batches():
            for row in batch.to_pylist():
                yield row_to_pair(row, self.shards.path, self.shards.where(i))
                i += 1

    def drop_ties(self) -> ShardedPairs:
        """A view without `meta.tie == true` rows (kept on disk, left out of BT training), found by scanning
        only the meta column, so the set stays memory-mapped instead of being decoded into a list."""
        import pyarrow.compute as pc

        keep, start = [], 0
        for batch in self.shards.iter_batches(columns=["meta"]):
            meta = batch.column("meta")
            maybe = np.flatnonzero(
                pc.fill_null(pc.match_substring(meta, '"tie"'), False).to_numpy(zero_copy_only=False)
            )
            ties = [k for k in maybe if json.loads(meta[int(k)].as_py()).get("tie") is True]
            mask = np.ones(batch.num_rows, bool)
            mask[ties] = False
            keep.append(np.flatnonzero(mask) + start)
            start += batch.num_rows
        rows = np.concatenate(keep) if keep else np.zeros(0, np.int64)
        if self.rows is not None:
            rows = np.intersect1d(self.rows, rows)
        return ShardedPairs(self.shards.path, rows)
