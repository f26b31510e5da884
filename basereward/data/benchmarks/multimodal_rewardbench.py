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
from basereward.types import IMAGE_TAG, DataError, ImageRef, PreferencePair

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
    # warned over the pairs kept: a skipped record is in no metric
    odd_better = [p.meta["original_id"] for p in pairs if p.meta["better"] not in ("Output1", "Output2")]
    unknown = sorted({p.meta["raw_category"] for p in pairs} - set(KNOWN_CATEGORIES))
    if odd_better:
        warnings.warn(
            f"{len(odd_better)} row(s) have 'Better' other than Output1/Output2 (first: {odd_better[0]}); "
            "scored as Output1 preferred, as the official script does",
            stacklevel=3,
        )
    if unknown:
        warnings.warn(
            f"unknown Category value(s) {unknown}: counted in Overall (micro) but in none of the 7 columns",
            stacklevel=3,
        )
    return pairs


def _to_pair(rec: dict, where: str, root: Path) -> PreferencePair:
    rid = rec.get("ID")
    if rid is None or rid == "":
        raise DataError(f"{where}: missing or empty 'ID'")
    if not isinstance(rid, str):
        raise DataError(f"{where}: field 'ID' must be a string, got {type(rid).__name__}")
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
    if not isinstance(better, str):
        # A string other than Output1/Output2 is read as Output1 (warned in `load`), as the official script
        # reads it; no label at all is not a row that script can score.
        raise DataError(
            f'{where} (id {rid}): \'Better\' must be "Output1" or "Output2" (unknown label): got {better!r}'
        )
    second = better == "Output2"
    chosen, rejected = (out2, out1) if second else (out1, out2)
    check_responses(
        chosen, rejected, where, rid, ("Output2", "Output1") if second else ("Output1", "Output2")
    )
    check_tags(text, IMAGE_TAG, where, rid, "Text")
    return PreferencePair(
        id=rid,
        prompt=media_prompt(text),
        chosen=chosen,
        rejected=rejected,
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
