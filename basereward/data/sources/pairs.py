"""Our own pair JSONL (basereward/data/io.py) -> pairs (`--source pairs`), so a hand-made or exported JSONL
can be turned into shards, mixed, split and decontaminated like any public source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from basereward.data.io import parse_record
from basereward.data.sources.readers import Result, data_files, each_row, file_rows


def convert(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    for f in data_files(Path(inp), "pairs", split):
        base = Path(images) if images else f.parent
        rows = ((w, i, r) for i, (w, r) in enumerate(file_rows(f, "pairs")))
        yield from each_row(rows, lambda row, where, i, b=base: [parse_record(row, where=where, base_dir=b)])
