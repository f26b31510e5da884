"""The one reader of JSON records: JSON lines, or a JSON array, each record located as `file:line`.

Pair files (basereward.data.io), raw public datasets (basereward.data.sources) and benchmark files
(basereward.data.benchmarks) all read through here, so a broken record reads the same wherever it is met:

    data/train.jsonl:17: malformed JSON: Expecting ',' delimiter at column 12
    data/train.jsonl:18: invalid UTF-8: bad byte at column 40
    data/train.jsonl:19: a record must be a JSON object, got list
    bench/all_data.json:120 item 7: a record must be a JSON object, got str

`scan_json` / `scan_lines` hand every record over with its location, the bad ones as their `DataError`: a
caller with a skip-and-count policy applies it, the others raise. `read_json` is that fail-fast loop.
Line numbers are the file's own (blank lines count, they are just not records).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from basereward.types import DataError

_WS = re.compile(r"[ \t\n\r]*")
_BOM = b"\xef\xbb\xbf"


class Record(NamedTuple):
    where: str  # "file:line", plus " item N" for the items of a JSON array
    line: int  # 1-based line the record starts on
    offset: int  # byte offset of a JSON line (to re-read it alone); -1 for array items
    value: Any  # the decoded object, or the DataError that makes the record unusable


def decode_object(raw: bytes | str, where: str) -> dict:
    """One JSON line -> dict, or DataError `where: <what is wrong>` (UTF-8, JSON syntax, not an object)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{where}: invalid UTF-8: bad byte at column {e.start + 1}") from e
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        # pos, not colno: at the end of a truncated line colno counts from the trailing newline
        # one of json's messages ("Invalid control character at") already ends in "at"
        raise DataError(f"{where}: malformed JSON: {e.msg.removesuffix(' at')} at column {e.pos + 1}") from e
    return _object(obj, where)


def _object(obj: Any, where: str) -> dict:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: a record must be a JSON object, got {type(obj).__name__}")
    return obj


def scan_lines(src: IO[bytes] | IO[str], name: str) -> Iterator[Record]:
    """Every non-blank line of an open JSON-lines stream; `name` is the file as error messages show it."""
    offset = 0
    for lineno, raw in enumerate(src, start=1):
        start = offset
        offset += len(raw)
        if lineno == 1 and isinstance(raw, bytes) and raw.startswith(_BOM):
            # Windows tools write one; json.loads would call it malformed. The offset skips it too, so the
            # line re-read alone from there decodes the same.
            raw, start = raw[len(_BOM) :], len(_BOM)
        if not raw.strip():
            continue
        where = f"{name}:{lineno}"
        try:
            value: Any = decode_object(raw, where)
        except DataError as e:
            value = e
        yield Record(where, lineno, start, value)


def scan_json(path: str | Path, name: str | None = None) -> Iterator[Record]:
    """The records of a JSON-lines file or of a JSON array file, whatever the extension says: the first
    non-blank character decides (public copies disagree, and SHP ships JSON lines as `.json`).

    A malformed array raises at once, before any item (one broken array cannot be skipped item by item)."""
    path = Path(path)
    name = str(path) if name is None else name
    if not path.is_file():
        raise DataError(f"{name}: data file not found")
    with path.open("rb") as f:
        head = f.read(4096).removeprefix(_BOM).lstrip()
        f.seek(0)
        if not head.startswith(b"["):
            yield from scan_lines(f, name)
            return
        raw = f.read().removeprefix(_BOM)
    yield from _array_records(raw, name)


def read_json(path: str | Path, name: str | None = None) -> Iterator[tuple[str, dict]]:
    """(where, record) of every record of `path`; the first bad record raises its DataError."""
    for rec in scan_json(path, name):
        if isinstance(rec.value, DataError):
            raise rec.value
        yield rec.where, rec.value


def _array_records(raw: bytes, name: str) -> list[Record]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - raw.rfind(b"\n", 0, e.start)
        raise DataError(f"{name}:{line}: invalid UTF-8: bad byte at column {col}") from e
    decoder = json.JSONDecoder()
    out: list[Record] = []
    pos = _WS.match(text, text.index("[") + 1).end()
    line, counted = 1, 0
    while not text.startswith("]", pos):
        if out:  # after an item: a comma, then the next item
            if not text.startswith(",", pos):
                raise _array_error(text, pos, name, "expected ',' or ']' after an item")
            pos = _WS.match(text, pos + 1).end()
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            msg = e.msg.removesuffix(" at")
            raise DataError(f"{name}:{e.lineno}: malformed JSON array: {msg} at column {e.colno}") from e
        line += text.count("\n", counted, pos)
        counted = pos
        where = f"{name}:{line} item {len(out)}"
        try:
            value: Any = _object(obj, where)
        except DataError as e:
            value = e
        out.append(Record(where, line, -1, value))
        pos = _WS.match(text, end).end()
    rest = _WS.match(text, pos + 1).end()
    if rest < len(text):
        raise _array_error(text, rest, name, "extra data after the array")
    return out


def _array_error(text: str, pos: int, name: str, what: str) -> DataError:
    line = text.count("\n", 0, pos) + 1
    col = pos - text.rfind("\n", 0, pos)
    return DataError(f"{name}:{line}: malformed JSON array: {what} at column {col}")
