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
    data_file,
    iter_json_records,
    media_prompt,
    require_str,
    resolve_media,
    unique_id,
)
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
    path: str | Path, images: str | Path | None = None, limit: int | None = None
) -> list[PreferencePair]:
    (file,) = data_files(path)
    root = Path(images) if images is not None else file.parent
    pairs: list[PreferencePair] = []
    seen: dict[str, int] = {}
    uncategorised: list[str] = []
    for where, rec in iter_json_records(file):
        if limit is not None and len(pairs) >= limit:
            break
        rid = rec.get("id")
        if not isinstance(rid, str) or not rid:
            raise DataError(f"{where}: missing or empty 'id'")
        image, video = rec.get("image"), rec.get("video")
        if bool(image) == bool(video):
            raise DataError(f"{where} (id {rid}): a row needs exactly one of 'image' or 'video'")
        media = image or video
        if not isinstance(media, str):
            raise DataError(f"{where} (id {rid}): the media path must be a string")
        loc = f"{where} id={rid}"
        resolved = str(resolve_media(root, media))
        category = category_of(media)
        if category is None:
            uncategorised.append(rid)
        pairs.append(
            PreferencePair(
                id=unique_id(rid, seen),
                prompt=media_prompt(
                    require_str(rec, "prompt", where, rid), IMAGE_TAG if image else VIDEO_TAG
                ),
                chosen=require_str(rec, "chosen", where, rid),
                rejected=require_str(rec, "rejected", where, rid),
                images=[ImageRef(path=resolved, where=loc)] if image else [],
                videos=[VideoRef(frames_dir=resolved, where=loc)] if video else [],
                source=NAME,
                meta={
                    "benchmark": NAME,
                    "original_id": rid,
                    "group": rid,
                    "category": category,
                    "media_path": media,
                    "chosen_reason": rec.get("chosen_reason"),
                    "rejected_reason": rec.get("rejected_reason"),
                },
                where=where,
            )
        )
    if uncategorised:
        warnings.warn(
            f"{len(uncategorised)} row(s) have no mcq/long/short/safety/video in their path (first id: "
            f"{uncategorised[0]}): counted in Acc and Acc+ only, as the official script does",
            stacklevel=3,
        )
    return pairs
