"""Multimodal RewardBench loader (docs/benchmarks.md §3).

Reads `data/all_data.json` as written by the repo's `scripts/0_download_data.py`: a JSON array of
{ID, Text, Image, Output1, Output2, Better, Category}; `Image` is relative to `data/` (the file's folder, or
`--images`). chosen = Output2 if Better == "Output2" else Output1, exactly as `2_get_accuracy.py` labels it.
`meta["category"]` is the official accuracy bucket: `Category` as is, except safety -> safety/bias (ID starts
with "pairs") or safety/toxicity, and reasoning -> reasoning/math (ID starts with "math") or reasoning/coding.
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
from basereward.types import DataError, ImageRef, PreferencePair

NAME = "multimodal-rewardbench"
KNOWN_CATEGORIES = (
    "open_generation/correctness_task",
    "open_generation/preference_task",
    "knowledge",
    "reasoning",
    "safety",
    "vqa",
)


def bucket_of(rid: str, category: str) -> str:
    """The official accuracy bucket of a row (case-insensitive id prefixes, as `2_get_accuracy.py`)."""
    if category == "safety":
        return "safety/bias" if rid.lower().startswith("pairs") else "safety/toxicity"
    if category == "reasoning":
        return "reasoning/math" if rid.lower().startswith("math") else "reasoning/coding"
    return category


def data_files(path: str | Path) -> list[Path]:
    return data_file(
        path,
        ("all_data.json", "data/all_data.json"),
        "no all_data.json (run the repo's scripts/0_download_data.py first)",
    )


def load(
    path: str | Path, images: str | Path | None = None, limit: int | None = None
) -> list[PreferencePair]:
    (file,) = data_files(path)
    root = Path(images) if images is not None else file.parent
    pairs: list[PreferencePair] = []
    seen: dict[str, int] = {}
    odd_better: list[str] = []
    unknown: set[str] = set()
    for where, rec in iter_json_records(file):
        if limit is not None and len(pairs) >= limit:
            break
        rid = rec.get("ID")
        if not isinstance(rid, str) or not rid:
            raise DataError(f"{where}: missing or empty 'ID'")
        text = rec.get("Text")
        if not isinstance(text, str) or not text.strip():
            # all_data_release.json leaves Text empty for most sources; the download script fills it in.
            raise DataError(
                f"{where} (id {rid}): empty or missing 'Text': this looks like all_data_release.json; "
                "run scripts/0_download_data.py and pass the all_data.json it writes"
            )
        out1 = require_str(rec, "Output1", where, rid)
        out2 = require_str(rec, "Output2", where, rid)
        category = require_str(rec, "Category", where, rid)
        image = require_str(rec, "Image", where, rid)
        better = rec.get("Better")
        if better not in ("Output1", "Output2"):
            odd_better.append(rid)  # the official script reads anything but "Output2" as Output1
        if category not in KNOWN_CATEGORIES:
            unknown.add(category)
        second = better == "Output2"
        pairs.append(
            PreferencePair(
                id=unique_id(rid, seen),
                prompt=media_prompt(text),
                chosen=out2 if second else out1,
                rejected=out1 if second else out2,
                images=[ImageRef(path=str(resolve_media(root, image)), where=f"{where} id={rid}")],
                source=NAME,
                meta={
                    "benchmark": NAME,
                    "original_id": rid,
                    "category": bucket_of(rid, category),
                    "raw_category": category,
                    "better": better,
                },
                where=where,
            )
        )
    if odd_better:
        warnings.warn(
            f"{len(odd_better)} row(s) have 'Better' other than Output1/Output2 (first: {odd_better[0]}); "
            "scored as Output1 preferred, as the official script does",
            stacklevel=3,
        )
    if unknown:
        warnings.warn(
            f"unknown Category value(s) {sorted(unknown)}: counted in Overall (micro) but in none of the 7 columns",
            stacklevel=3,
        )
    return pairs
