"""What every benchmark loader shares: reading JSON arrays or JSONL with record locations, resolving media paths
against the different roots the public copies use, building the one-tag prompt, and file checksums."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from basereward.data.jsonl import read_json
from basereward.types import IMAGE_TAG, VIDEO_TAG, DataError


def iter_json_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, record) from a JSON array file or a JSONL file, whatever the extension says; the first bad
    record raises, located `file:line` (basereward.data.jsonl).

    The public copies disagree on the container (VL-RewardBench ships JSONL on GitHub and a JSON array in
    third-party dumps; Multimodal RewardBench is a JSON array), so the first character decides.
    """
    return read_json(path)


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
    val = rec.get(key)
    if not isinstance(val, str):
        got = "missing" if key not in rec else type(val).__name__
        raise DataError(f"{where} (id {rid}): field '{key}' must be a string, got {got}")
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
