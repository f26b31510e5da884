"""MM-RLHF-RewardBench loader (docs/benchmarks.md §4).

Reads `mm_reward_bench.jsonl` (one pair per line: id, image | video, prompt, chosen, rejected, *_reason) with an
image root holding `mcq/ long/ short/ safety/ video/` (the HF copy prefixes paths with `images/`, the R1-Reward
copy does not; both resolve). `video` rows name a folder of frames, read later by `basereward.video`.
`meta["group"]` is the query id that Acc+ groups on; `meta["category"]` is the first of mcq/long/short/safety/video
found as a substring of the raw path, as the official `cal_performance_mmreweard_bench.py` does (None if none).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from basereward.data.benchmarks.common import (
    check_responses,
    check_tags,
    collect_pairs,
    data_file,
    media_prompt,
    require_str,
    resolve_media,
    scan_json_records,
)
from basereward.data.io import LoadStats
from basereward.types import IMAGE_TAG, VIDEO_TAG, DataError, ImageRef, PreferencePair, VideoRef

NAME = "mm-rlhf-rewardbench"
CATEGORIES = ("mcq", "long", "short", "safety", "video")


def category_of(media_path: str) -> str | None:
    # Matched on the path as written in the file, never on the resolved one: a root such as /home/longo/ would
    # otherwise turn every row into "long".
    return next((k for k in CATEGORIES if k in media_path), None)


def data_files(path: str | Path) -> list[Path]:
    return data_file(path, ("mm_reward_bench.jsonl",), "no mm_reward_bench.jsonl in this folder")


def load(
    path: str | Path,
    images: str | Path | None = None,
    limit: int | None = None,
    on_error: str = "fail",
    stats: LoadStats | None = None,
) -> list[PreferencePair]:
    (file,) = data_files(path)
    root = Path(images) if images is not None else file.parent
    pairs = collect_pairs(
        scan_json_records(file),
        lambda where, rec: _to_pair(rec, where, root),
        on_error=on_error,
        stats=stats,
        limit=limit,
    )
    uncategorised = [p.meta["original_id"] for p in pairs if p.meta["category"] is None]
    if uncategorised:
        warnings.warn(
            f"{len(uncategorised)} row(s) have no mcq/long/short/safety/video in their path (first id: "
            f"{uncategorised[0]}): counted in Acc and Acc+ only, as the official script does",
            stacklevel=3,
        )
    return pairs


def _to_pair(rec: dict, where: str, root: Path) -> PreferencePair:
    rid = rec.get("id")
    if rid is None or rid == "":
        raise DataError(f"{where}: missing or empty 'id'")
    if not isinstance(rid, str):
        raise DataError(f"{where}: field 'id' must be a string, got {type(rid).__name__}")
    image, video = rec.get("image"), rec.get("video")
    if bool(image) == bool(video):
        raise DataError(f"{where} (id {rid}): a row needs exactly one of 'image' or 'video'")
    media = image or video
    if not isinstance(media, str):
        raise DataError(f"{where} (id {rid}): the media path must be a string, got {type(media).__name__}")
    prompt = require_str(rec, "prompt", where, rid)
    chosen = require_str(rec, "chosen", where, rid)
    rejected = require_str(rec, "rejected", where, rid)
    check_responses(chosen, rejected, where, rid, ("chosen", "rejected"))
    tag = IMAGE_TAG if image else VIDEO_TAG
    check_tags(prompt, tag, where, rid, "prompt")
    loc = f"{where} id={rid}"
    resolved = str(resolve_media(root, media))
    return PreferencePair(
        id=rid,
        prompt=media_prompt(prompt, tag),
        chosen=chosen,
        rejected=rejected,
        images=[ImageRef(path=resolved, where=loc)] if image else [],
        videos=[VideoRef(frames_dir=resolved, where=loc)] if video else [],
        source=NAME,
        meta={
            "benchmark": NAME,
            "original_id": rid,
            "group": rid,
            "category": category_of(media),
            "media_path": media,
            "chosen_reason": rec.get("chosen_reason"),
            "rejected_reason": rec.get("rejected_reason"),
        },
        where=where,
    )
