"""What every benchmark loader shares: reading JSON arrays or JSONL with record locations, the bad-input policy
(`on_error` fail | skip, skips counted by cause), the checks every benchmark pair passes, resolving media paths
against the different roots the public copies use, building the one-tag prompt, and file checksums."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from basereward.data import io
from basereward.data.io import LoadStats
from basereward.data.jsonl import read_json, scan_json
from basereward.types import IMAGE_TAG, VIDEO_TAG, DataError, PreferencePair

ON_ERROR = ("fail", "skip")


def iter_json_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, record) from a JSON array file or a JSONL file, whatever the extension says; the first bad
    record raises, located `file:line` (basereward.data.jsonl).

    The public copies disagree on the container (VL-RewardBench ships JSONL on GitHub and a JSON array in
    third-party dumps; Multimodal RewardBench is a JSON array), so the first character decides.
    """
    return read_json(path)


def scan_json_records(path: Path) -> Iterator[tuple[str, Any]]:
    """Like `iter_json_records`, but an unreadable record (malformed JSON, invalid UTF-8, not an object) comes as
    its DataError instead of raising, so that `collect_pairs` can skip it under `on_error="skip"`."""
    for rec in scan_json(path):
        yield rec.where, rec.value


def scan_records(path: Path) -> Iterator[tuple[str, Any]]:
    """`scan_json_records` for JSON and JSONL; a Parquet file (HF releases) row by row, located `file row N`."""
    if path.suffix != ".parquet":
        yield from scan_json_records(path)
        return
    import pyarrow.parquet as pq

    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256):  # bounded memory on a large release
        for rec in batch.to_pylist():
            yield f"{path} row {row}", rec
            row += 1


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")


def collect_pairs(
    rows: Iterable[tuple[str, Any]],
    to_pair: Callable[[str, dict], PreferencePair],
    *,
    on_error: str = "fail",
    stats: LoadStats | None = None,
    limit: int | None = None,
    unique_ids: bool = True,
) -> list[PreferencePair]:
    """The pairs of `rows` ((where, record or its DataError) in file order), applying the one bad-input policy:
    a record that is unreadable or that `to_pair` refuses (DataError) stops the load under "fail" and is
    skipped and counted by cause in `stats` under "skip". `limit` keeps the first N good pairs; no record
    after them is read. With `unique_ids` a repeated id gets a "#k" suffix, counted over the kept pairs only
    (a skipped record takes no number)."""
    check_on_error(on_error)
    stats = stats if stats is not None else LoadStats()
    pairs: list[PreferencePair] = []
    seen: dict[str, int] = {}
    for where, rec in rows:
        if limit is not None and len(pairs) >= limit:
            break
        stats.lines += 1
        try:
            if isinstance(rec, DataError):
                raise rec
            pair = to_pair(where, rec)
        except DataError as e:
            if on_error == "fail":
                raise
            stats.skip(e)
            continue
        if unique_ids:
            pair.id = unique_id(pair.id, seen)
        stats.kept += 1
        pairs.append(pair)
    return pairs


def check_responses(chosen: str, rejected: str, where: str, rid: str, fields: tuple[str, str]) -> None:
    """The rules every pair obeys (basereward.data.io.check_responses), located by the record's id too; `fields`
    names the two responses as the benchmark's file does."""
    io.check_responses(chosen, rejected, f"{where} (id {rid})", fields)


def check_tags(text: str, tag: str, where: str, rid: str, field: str) -> None:
    """A benchmark row has exactly one medium, so its raw prompt may carry at most one tag, of that medium's
    kind (VL-RewardBench's GitHub copy has one `<image>`, the other copies none); `media_prompt` then places
    exactly one. More, or a tag of the other kind, means the text does not belong to this row's media."""
    n_img, n_vid = text.count(IMAGE_TAG), text.count(VIDEO_TAG)
    own, other = (n_img, n_vid) if tag == IMAGE_TAG else (n_vid, n_img)
    if own > 1 or other:
        kind = "image" if tag == IMAGE_TAG else "video"
        raise DataError(
            f"{where} (id {rid}): {kind} placeholder count mismatch: '{field}' has {n_img} {IMAGE_TAG} and "
            f"{n_vid} {VIDEO_TAG} tag(s) for one {kind}"
        )


def data_file(path: str | Path, candidates: tuple[str, ...], missing: str) -> list[Path]:
    """`[path]` for a file; for a folder the first of `candidates` (relative paths) that exists, else a DataError
    "{path}: {missing}"."""
    path = Path(path)
    if path.is_dir():
        for rel in candidates:
            if (path / rel).is_file():
                return [path / rel]
        raise DataError(f"{path}: {missing}")
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    return [path]


def resolve_media(root: Path, rel: str) -> Path:
    """The file or folder `rel` names under `root`, trying the layouts the public copies use.

    Copies differ in whether paths carry a leading `images/` and in whether users point `--images` at the folder
    holding `images/` or at `images/` itself. The first candidate that exists wins; when none does, the plain
    `root / rel` is returned so that the error (raised only when the media is actually read) names it.
    """
    p = Path(rel)
    if p.is_absolute():
        return p
    candidates = [root / p]
    if len(p.parts) > 1 and p.parts[0] == "images":
        candidates.append(root / Path(*p.parts[1:]))
    candidates.append(root / "images" / p)
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


def strip_media_tags(text: str) -> str:
    """Remove `<image>`/`<video>` tags (with the newline that joins them to the text) from a raw prompt.

    VL-RewardBench's GitHub copy has POVID queries as "<image>\\nQ" or "Q\\n<image>" while the HF copy has plain
    "Q"; stripping both spellings gives both forms the same prompt, and the loader then adds exactly one tag.
    """
    for tag in (IMAGE_TAG, VIDEO_TAG):
        text = text.replace(tag + "\n", "").replace("\n" + tag, "").replace(tag, "")
    return text


def media_prompt(text: str, tag: str = IMAGE_TAG) -> list[dict[str, str]]:
    """One user turn: the media tag first, as the official MM-RLHF script and Qwen's examples place it."""
    return [{"role": "user", "content": f"{tag}\n{strip_media_tags(text)}"}]


def require_str(rec: dict, key: str, where: str, rid: str) -> str:
    """`rec[key]`, a string; a missing field and a wrong type are told apart (they are different causes)."""
    if rec.get(key) is None:
        raise DataError(f"{where} (id {rid}): missing field '{key}'")
    val = rec[key]
    if not isinstance(val, str):
        raise DataError(f"{where} (id {rid}): field '{key}' must be a string, got {type(val).__name__}")
    return val


def unique_id(rid: str, seen: dict[str, int]) -> str:
    """`rid` the first time, `rid#2`, `rid#3`... after: ids repeat in VL-RewardBench (25 ids) and MM-RLHF-RB
    (one id per query, 2-6 pairs each), so the pair id is made unique and the original kept in `meta`."""
    seen[rid] = seen.get(rid, 0) + 1
    return rid if seen[rid] == 1 else f"{rid}#{seen[rid]}"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
