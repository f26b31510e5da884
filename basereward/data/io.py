"""Pair JSONL: read and write the unified pair record (docs/datasets.md §1).

One JSON object per line:

    {"id": "synth:17", "source": "synth/colour",
     "prompt": [{"role": "user", "content": "<image>\\nWhat colour is the shape?"}],
     "images": [{"path": "images/17.png"}],          # or {"bytes": "<base64>"} or a plain path string
     "chosen": "The shape is red.", "rejected": "The shape is blue.",
     "score_chosen": null, "score_rejected": null, "margin": null, "meta": {},
     "chosen_critique": "The image shows a red circle; the response says red: correct.",      # optional
     "rejected_critique": "The image shows a red circle; the response says blue: wrong, it is red."}

Image paths are relative to the JSONL file's folder (absolute paths are kept). `prompt` may also be a plain string
(one user turn). Text-only pairs have `"images": []` and may share a file and a batch with image pairs.
`chosen_critique` / `rejected_critique` are optional strings; null, a missing key and a blank string all read as
None (a blank critique says nothing a critic could learn from), and they are written only when set.

Every problem raises `DataError` naming `file:line`; with `on_error="skip"` the line is skipped and counted in
`LoadStats` instead.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from basereward.data.jsonl import decode_object, scan_lines
from basereward.types import IMAGE_TAG, VIDEO_TAG, DataError, ImageRef, PreferencePair, VideoRef


@dataclass
class LoadStats:
    """What a load saw: lines read, records kept, and skips by reason (with the first few locations)."""

    lines: int = 0
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def skip(self, err: DataError) -> None:
        reason = str(err).split(": ", 1)[-1].split(":")[0][:60]
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.examples) < 20:
            self.examples.append(str(err))

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


def read_pairs(
    path: str | Path, *, on_error: str = "fail", check_images: bool = True, stats: LoadStats | None = None
) -> list[PreferencePair]:
    """Load a pair JSONL file. See the module docstring for the record and the error policy."""
    return list(iter_pairs(path, on_error=on_error, check_images=check_images, stats=stats))


def iter_pairs(
    path: str | Path, *, on_error: str = "fail", check_images: bool = True, stats: LoadStats | None = None
) -> Iterator[PreferencePair]:
    for _offset, _lineno, pair in scan_records(
        path, on_error=on_error, check_images=check_images, stats=stats
    ):
        yield pair


def scan_records(
    path: str | Path, *, on_error: str = "fail", check_images: bool = True, stats: LoadStats | None = None
) -> Iterator[tuple[int, int, PreferencePair]]:
    """(byte offset, line number, pair) of every valid record; bad ones raise or are skipped and counted."""
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: pair file not found")
    stats = stats if stats is not None else LoadStats()
    with path.open("rb") as f:
        for rec in scan_lines(f, str(path)):
            stats.lines += 1
            try:
                pair = parse_record(rec.value, where=rec.where, base_dir=path.parent)
                if check_images:
                    verify_images(pair)
            except DataError as e:
                if on_error == "fail":
                    raise
                stats.skip(e)
                continue
            stats.kept += 1
            yield rec.offset, rec.line, pair


def parse_record(line: bytes | str | dict | DataError, *, where: str, base_dir: Path) -> PreferencePair:
    """Parse and validate one record: a JSON line, an already-decoded dict, or the error that made its line
    unreadable (as `scan_lines` hands it over), which is raised."""
    if isinstance(line, DataError):
        raise line
    rec = decode_object(line, where) if isinstance(line, bytes | str) else line
    if not isinstance(rec, dict):
        raise DataError(f"{where}: a record must be a JSON object, got {type(rec).__name__}")
    for key in ("prompt", "chosen", "rejected"):
        if key not in rec:
            raise DataError(f"{where}: missing field '{key}'")
    prompt = _parse_prompt(rec["prompt"], where)
    chosen, rejected = rec["chosen"], rec["rejected"]
    for key, val in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(val, str):
            raise DataError(f"{where}: field '{key}' must be a string, got {type(val).__name__}")
    check_responses(chosen, rejected, where)
    images = [_parse_image(x, where, base_dir, i) for i, x in enumerate(rec.get("images") or [])]
    videos = [_parse_video(x, where, base_dir, i) for i, x in enumerate(rec.get("videos") or [])]
    n_img = sum(str(m.get("content", "")).count(IMAGE_TAG) for m in prompt)
    n_vid = sum(str(m.get("content", "")).count(VIDEO_TAG) for m in prompt)
    if n_img != len(images):
        raise DataError(
            f"{where}: image placeholder count mismatch: prompt has {n_img} {IMAGE_TAG} tag(s) "
            f"but the record lists {len(images)} image(s)"
        )
    if n_vid != len(videos):
        raise DataError(
            f"{where}: prompt has {n_vid} {VIDEO_TAG} tag(s) but the record lists {len(videos)} video(s)"
        )

    def opt_float(key):
        val = rec.get(key)
        if val is None:
            return None
        try:
            return float(val)
        except (TypeError, ValueError) as e:
            raise DataError(f"{where}: field '{key}' must be a number or null, got {val!r}") from e

    def opt_text(key):
        val = rec.get(key)
        if val is None:
            return None
        if not isinstance(val, str):
            raise DataError(f"{where}: field '{key}' must be a string or null, got {type(val).__name__}")
        return val if val.strip() else None

    meta = rec.get("meta") or {}
    if not isinstance(meta, dict):
        raise DataError(f"{where}: field 'meta' must be an object")
    return PreferencePair(
        id=str(rec.get("id") or where),
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        images=images,
        videos=videos,
        source=str(rec.get("source") or ""),
        score_chosen=opt_float("score_chosen"),
        score_rejected=opt_float("score_rejected"),
        margin=opt_float("margin"),
        chosen_critique=opt_text("chosen_critique"),
        rejected_critique=opt_text("rejected_critique"),
        meta=meta,
        where=where,
    )


def check_responses(
    chosen: str,
    rejected: str,
    where: str,
    fields: tuple[str, str] = ("chosen", "rejected"),
    distinct: bool = True,
) -> None:
    """The rules every pair's two responses obey, wherever the pair comes from (pair files, converters, benchmark
    loaders), worded once so that a skip is counted under the same cause everywhere: non-blank, no media tag (the
    media belong to the prompt), and, unless `distinct` is False, different from each other (an identical pair
    has no preference to learn or measure: every scorer ties on it). `fields` name the two as the file does."""
    for key, text in zip(fields, (chosen, rejected)):
        if not text.strip():
            raise DataError(f"{where}: empty response in field '{key}'")
        if IMAGE_TAG in text or VIDEO_TAG in text:
            raise DataError(
                f"{where}: field '{key}' contains an {IMAGE_TAG}/{VIDEO_TAG} tag: responses hold none"
            )
    if distinct and chosen.strip() == rejected.strip():
        raise DataError(f"{where}: chosen == rejected: no preference to learn or measure")


def _parse_prompt(value, where: str) -> list[dict]:
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: empty prompt")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: field 'prompt' must be a non-empty list of messages or a string")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(f"{where}: prompt[{i}] must be an object with 'role' and 'content'")
        if m["role"] not in ("system", "user", "assistant"):
            raise DataError(f"{where}: prompt[{i}].role must be system/user/assistant, got {m['role']!r}")
        if not isinstance(m["content"], str):
            raise DataError(f"{where}: prompt[{i}].content must be a string (images go in 'images')")
        out.append({"role": m["role"], "content": m["content"]})
    if out[-1]["role"] != "user":
        raise DataError(f"{where}: the prompt must end with a user turn, got {out[-1]['role']!r}")
    return out


def _parse_image(value, where: str, base_dir: Path, i: int) -> ImageRef:
    loc = f"{where} images[{i}]"
    if isinstance(value, str):
        value = {"path": value}
    if not isinstance(value, dict):
        raise DataError(f"{loc}: an image must be a path string, {{'path': ...}} or {{'bytes': <base64>}}")
    if value.get("bytes") is not None:
        raw = value["bytes"]
        if isinstance(raw, str):
            try:
                raw = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError) as e:
                raise DataError(f"{loc}: 'bytes' is not valid base64") from e
        if not isinstance(raw, bytes | bytearray):
            raise DataError(f"{loc}: 'bytes' must be base64 text")
        return ImageRef(data=bytes(raw), where=loc)
    if value.get("path"):
        p = Path(value["path"])
        p = p if p.is_absolute() else base_dir / p
        if not p.is_file():
            raise DataError(f"{loc}: image file not found: {p}")
        return ImageRef(path=str(p), where=loc)
    raise DataError(f"{loc}: image has neither 'path' nor 'bytes'")


def _parse_video(value, where: str, base_dir: Path, i: int) -> VideoRef:
    loc = f"{where} videos[{i}]"
    if isinstance(value, str):
        value = {"frames_dir": value}
    d = value.get("frames_dir") if isinstance(value, dict) else None
    if not d:
        raise DataError(f"{loc}: a video must be {{'frames_dir': <folder of frames>}}")
    p = Path(d)
    p = p if p.is_absolute() else base_dir / p
    if not p.is_dir():
        raise DataError(f"{loc}: frames folder not found: {p}")
    return VideoRef(frames_dir=str(p), where=loc)


def verify_images(pair: PreferencePair) -> None:
    """Every image fully decodable and of a sane size, so a corrupt file fails at load, naming `file:line`."""
    for img in pair.images:
        img.verify()


def pair_to_record(pair: PreferencePair, *, out_dir: Path, embed_images: bool = False) -> dict:
    """The JSON-able record; image paths are written relative to `out_dir` where possible."""
    images = []
    for img in pair.images:
        if embed_images or img.path is None:
            data = img.data if img.data is not None else Path(img.path).read_bytes()
            images.append({"bytes": base64.b64encode(data).decode("ascii")})
        else:
            p = Path(img.path).resolve()
            try:
                images.append({"path": str(p.relative_to(out_dir.resolve()))})
            except ValueError:
                images.append({"path": str(p)})
    rec = {
        "id": pair.id,
        "source": pair.source,
        "prompt": pair.prompt,
        "images": images,
        "chosen": pair.chosen,
        "rejected": pair.rejected,
        "score_chosen": pair.score_chosen,
        "score_rejected": pair.score_rejected,
        "margin": pair.margin,
        "meta": pair.meta,
    }
    if pair.videos:
        rec["videos"] = [{"frames_dir": v.frames_dir} for v in pair.videos]
    # Only when set, so a file of pairs without critiques is written exactly as before the fields existed.
    for key in ("chosen_critique", "rejected_critique"):
        if getattr(pair, key) is not None:
            rec[key] = getattr(pair, key)
    return rec


def write_pairs(path: str | Path, pairs: Iterable[PreferencePair], *, embed_images: bool = False) -> int:
    """Write pairs as JSONL atomically (temp file + rename, so a crash never leaves half a file). Returns count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for pair in pairs:
            rec = pair_to_record(pair, out_dir=path.parent, embed_images=embed_images)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n
