"""Raw rows from a source's public on-disk layout: a parquet/JSONL/JSON/Arrow file, a folder of them (an HF
snapshot), a `datasets.save_to_disk` folder or `DatasetDict` folder, or JSONL members of a zip.

Every row comes with its location, `[source] FILE row N` (0-based, tabular files) or, through the one JSON
reader (basereward.data.jsonl), `[source] FILE:LINE` (JSON lines) and `[source] FILE:LINE item N` (JSON
arrays), which every error message about it starts with. Reading streams in small batches, so a multi-GB
parquet with embedded images never has to fit in memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from basereward.data.jsonl import scan_json, scan_lines
from basereward.data.sources.text import Drop
from basereward.types import DataError, PreferencePair

# (where, global row index, row dict -- or the DataError that made the row unreadable, so `--on-error skip`
# can count it and go on).
Row = tuple[str, int, Any]
# What a converter yields per raw row: its location and its pairs, or why it has none.
Result = tuple[str, "list[PreferencePair] | DataError | Drop"]

_METADATA_JSON = {"dataset_info.json", "dataset_infos.json", "state.json", "dataset_dict.json", "meta.json"}
_PARQUET_BATCH_ROWS = 64  # image-bearing rows can be MBs each; small batches keep memory flat


def read_rows(path: Path, label: str, split: str | None = None) -> Iterator[Row]:
    """All rows of `path` in a stable order (files sorted by name), numbered from 0."""
    files = data_files(path, label, split)
    index = 0
    for f in files:
        for where, row in file_rows(f, label):
            yield where, index, row
            index += 1


def each_row(
    rows: Iterable[Row], to_pairs: Callable[[dict, str, int], list[PreferencePair]]
) -> Iterator[Result]:
    """Map raw rows to results. Any error a row provokes becomes a DataError naming the row, so the driver's
    `--on-error` policy applies to it; a malformed value (wrong type deep in a struct) is bad input too."""
    for where, index, row in rows:
        if isinstance(row, DataError):
            yield where, row
            continue
        try:
            yield where, to_pairs(row, where, index)
        except (DataError, Drop) as e:
            yield where, e
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            yield where, DataError(f"{where}: malformed row ({type(e).__name__}: {e})")


def data_files(path: Path, label: str, split: str | None = None) -> list[Path]:
    """The data files a path stands for. `split` picks HF split files (`<split>-00000-of-00001.parquet`), a
    `<split>.json(l)` file, a `<split>/` folder or a `DatasetDict` split."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"[{label}] input not found: {path}")
    if (path / "dataset_dict.json").is_file():  # a DatasetDict.save_to_disk folder
        return data_files(path / (split or "train"), label, None)
    if (path / "state.json").is_file():  # a Dataset.save_to_disk folder: its Arrow stream files, in order
        state = json.loads((path / "state.json").read_text())
        return [path / f["filename"] for f in state.get("_data_files", [])]
    for patterns in (("*.parquet",), ("*.jsonl", "*.json"), ("*.arrow",)):
        found = sorted(
            f
            for p in patterns
            for f in path.rglob(p)
            if f.name not in _METADATA_JSON and ".cache" not in f.parts
        )
        found = [f for f in found if split is None or _in_split(f.relative_to(path), split)]
        if found:
            return found
    raise DataError(
        f"[{label}] no parquet/jsonl/json/arrow data files under {path}"
        + (f" for split {split!r}" * bool(split))
    )


def _in_split(rel: Path, split: str) -> bool:
    stem = rel.name.split(".")[0]
    return stem == split or stem.startswith(split + "-") or split in rel.parts[:-1]


def file_rows(f: Path, label: str) -> Iterator[tuple[str, Any]]:
    suffix = f.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_rows(f, label)
    elif suffix == ".arrow":
        yield from _arrow_rows(f, label)
    elif suffix in (".jsonl", ".json"):  # JSON lines or a JSON array, whatever the extension
        for rec in scan_json(f, f"[{label}] {f}"):
            yield rec.where, rec.value
    else:
        raise DataError(f"[{label}] {f}: unsupported file type {suffix!r} (parquet, jsonl, json or arrow)")


def _parquet_rows(f: Path, label: str) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(f"[{label}] {f}: unreadable parquet file: {e}") from e
    yield from _batch_rows(pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS), f"[{label}] {f}")


def _arrow_rows(f: Path, label: str) -> Iterator[tuple[str, Any]]:
    import pyarrow as pa

    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(f), "r"))
    except pa.ArrowInvalid:
        reader = pa.ipc.open_file(pa.memory_map(str(f), "r"))
    batches = (
        reader
        if hasattr(reader, "read_next_batch")
        else (reader.get_batch(i) for i in range(reader.num_record_batches))
    )
    yield from _batch_rows(batches, f"[{label}] {f}")


def _batch_rows(batches: Iterable, prefix: str) -> Iterator[tuple[str, Any]]:
    i = 0
    for batch in batches:
        for row in batch.to_pylist():
            yield f"{prefix} row {i}", row
            i += 1


def jsonl_rows(fh: IO[bytes], prefix: str) -> Iterator[tuple[str, Any]]:
    """Rows of a JSON-lines stream (a zip member, say), located `prefix:line`; a bad line is yielded as its
    DataError."""
    for rec in scan_lines(fh, prefix):
        yield rec.where, rec.value
