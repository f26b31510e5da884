"""VL-RewardBench loader and its category maps (docs/benchmarks.md §2).

Reads every public on-disk form into `PreferencePair`s (chosen = the response with `human_ranking == 0`):
  (a) the HF parquet (`data/test-00000-of-00001.parquet`, image = {bytes, path}; a snapshot folder works too),
  (b) the original GitHub `data/data.jsonl` (`image_path` = `images/<source-folder>/<id>.jpg`, POVID queries
      carry an `<image>` tag),
  (c) HF-schema JSON-array / JSONL dumps (`image` = a path string).
Ids are not unique (25 repeat with different pairs), so a pair's identity is `pair_key` = (id, query, sorted
responses), as the official `cal.py` keys it; pair ids get a `#k` suffix and the original id stays in `meta`.
"""

from __future__ import annotations

import base64
import binascii
import warnings
from collections import Counter
from pathlib import Path

from basereward.data.benchmarks.common import (
    check_responses,
    check_tags,
    collect_pairs,
    media_prompt,
    require_str,
    resolve_media,
    scan_records,
    strip_media_tags,
)
from basereward.data.io import LoadStats
from basereward.types import IMAGE_TAG, DataError, ImageRef, PreferencePair

NAME = "vl-rewardbench"
GROUPS = ("general", "hallucination", "reasoning")
FULL_SET_COUNTS = {"general": 183, "hallucination": 749, "reasoning": 318}  # pinned HF revision, 1,250 rows
_REASONING_PREFIXES = ("mathverse", "mmmu_pro")


# The skip cause (LoadStats counts the text up to the value, so every bad ranking is one cause).
_BAD_RANKING = "'human_ranking' must be [0, 1] or [1, 0] (unknown label)"


def _official(rid: str) -> str:
    # VL_RewardBench cal.py >= 2025-05-08 (and the paper, lmms-eval, VLMEvalKit); anything unknown is vlfeedback,
    # which the official script files under General.
    if rid.startswith(("hallucination_pair", "RLAIF-V", "RLHF-V")):
        return "hallucination"
    if rid.startswith(_REASONING_PREFIXES):
        return "reasoning"
    return "general"


def _povid_in_general(rid: str) -> str:
    # cal.py 2024-12-10 .. 2025-04-28 sent POVID (`hallucination_pair-*`) to vlfeedback = General (a bug that
    # UnifiedReward-Think's numbers inherit): 631 / 301 / 318 on the full set.
    if rid.startswith(("RLAIF-V", "RLHF-V")):
        return "hallucination"
    if rid.startswith(_REASONING_PREFIXES):
        return "reasoning"
    return "general"


def _r1_reward(rid: str) -> str:
    # R1-Reward get_acc.py tests lowercase "rlhf"/"rlaif" substrings, which never match the upper-case
    # RLAIF-V-*/RLHF-V-* ids, so only POVID counts as Hallucination: 484 / 448 / 318 on the full set.
    if rid.startswith("hallucination_pair") or "rlhf" in rid or "rlaif" in rid:
        return "hallucination"
    if rid.startswith(_REASONING_PREFIXES):
        return "reasoning"
    return "general"


# name -> (id -> group, what it is). "official" is the default and the only split comparable across papers.
CATEGORY_MAPS = {
    "official": (_official, "id prefix, official cal.py >= 2025-05-08 / paper / lmms-eval / VLMEvalKit"),
    "povid-in-general": (
        _povid_in_general,
        "cal.py 2024-12-10..2025-04-28 (UnifiedReward-Think): POVID in General",
    ),
    "r1-reward": (
        _r1_reward,
        "R1-Reward get_acc.py: RLAIF-V and RLHF-V in General, Hallucination = POVID only",
    ),
}

# Form (b) image folders; the first official cal.py grouped by these, and they agree with `_official` on all
# 1,250 rows, so a disagreement flags an id the prefix map does not know.
_FOLDER_GROUPS = {
    "povid": "hallucination",
    "rlaif-v": "hallucination",
    "rlhf-v": "hallucination",
    "reasoning_tasks": "reasoning",
    "vlfeedback": "general",
    "wildvision-battle": "general",
}


def group_of(rid: str, category_map: str = "official") -> str:
    if category_map not in CATEGORY_MAPS:
        raise ValueError(
            f"unknown VL-RewardBench category map {category_map!r}; choose {sorted(CATEGORY_MAPS)}"
        )
    return CATEGORY_MAPS[category_map][0](rid)


def data_files(path: str | Path) -> list[Path]:
    """The files a `--data` path stands for: a file, or every parquet under an HF snapshot folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            files = [p for p in (path / "data.jsonl", path / "data.json") if p.is_file()]
        if not files:
            raise DataError(f"{path}: no *.parquet, data.jsonl or data.json in this folder")
        return files
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    return [path]


def load(
    path: str | Path,
    images: str | Path | None = None,
    limit: int | None = None,
    on_error: str = "fail",
    stats: LoadStats | None = None,
) -> list[PreferencePair]:
    files = data_files(path)
    root = Path(images) if images is not None else (Path(path) if Path(path).is_dir() else Path(path).parent)

    def rows():
        for file in files:
            yield from scan_records(file)

    pairs = collect_pairs(
        rows(), lambda where, rec: _to_pair(rec, where, root), on_error=on_error, stats=stats, limit=limit
    )
    if limit is None:
        _check_full_set(pairs)
    return pairs


def _to_pair(rec: dict, where: str, root: Path) -> PreferencePair:
    rid = rec.get("id")
    if rid is None or rid == "":
        raise DataError(f"{where}: missing or empty 'id'")
    if not isinstance(rid, str):
        raise DataError(f"{where}: field 'id' must be a string, got {type(rid).__name__}")
    query = require_str(rec, "query", where, rid)
    responses = rec.get("response")
    if responses is None:
        raise DataError(f"{where} (id {rid}): missing field 'response'")
    if not (
        isinstance(responses, list) and len(responses) == 2 and all(isinstance(r, str) for r in responses)
    ):
        raise DataError(f"{where} (id {rid}): 'response' must be a list of 2 strings")
    labels = rec.get("human_ranking")
    try:
        # bool and float would pass int(): True/1.0 are not the labels the official cal.py compares against
        if not isinstance(labels, list) or any(isinstance(x, bool | float) for x in labels):
            raise TypeError
        ranking = [int(x) for x in labels]
    except (TypeError, ValueError) as e:
        raise DataError(f"{where} (id {rid}): {_BAD_RANKING}: got {labels!r}") from e
    if sorted(ranking) != [0, 1]:
        raise DataError(f"{where} (id {rid}): {_BAD_RANKING}: got {ranking}")
    pref, rej = ranking.index(0), ranking.index(1)
    check_responses(responses[pref], responses[rej], where, rid, (f"response[{pref}]", f"response[{rej}]"))
    check_tags(query, IMAGE_TAG, where, rid, "query")

    loc = f"{where} id={rid}"
    image, folder = rec.get("image"), None
    if isinstance(image, dict) and image.get("bytes"):
        raw = image["bytes"]
        if isinstance(raw, str):  # a JSON dump of parquet rows carries the bytes as base64 text
            try:
                raw = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError) as e:
                raise DataError(f"{where} (id {rid}): image 'bytes' is neither binary nor base64") from e
        if not isinstance(raw, bytes | bytearray):
            raise DataError(f"{where} (id {rid}): image 'bytes' must be binary or base64 text")
        ref = ImageRef(data=bytes(raw), where=loc)
    else:
        rel = image.get("path") if isinstance(image, dict) else image
        rel = rel or rec.get("image_path")
        if not isinstance(rel, str) or not rel:
            raise DataError(f"{where} (id {rid}): no image (expected 'image' bytes/path or 'image_path')")
        ref = ImageRef(path=str(resolve_media(root, rel)), where=loc)
        parts = Path(rel).parts
        folder = parts[1] if len(parts) > 2 and parts[0] == "images" else None

    text = strip_media_tags(query)
    category = group_of(rid)
    if folder in _FOLDER_GROUPS and _FOLDER_GROUPS[folder] != category:
        warnings.warn(
            f"{where}: id {rid!r} maps to {category} by id prefix but its image folder {folder!r} says "
            f"{_FOLDER_GROUPS[folder]}; the official id-prefix map is used",
            stacklevel=4,
        )
    return PreferencePair(
        id=rid,
        prompt=media_prompt(text),
        chosen=responses[pref],
        rejected=responses[rej],
        images=[ref],
        source=NAME,
        meta={
            "benchmark": NAME,
            "original_id": rid,
            "category": category,
            "category_by_map": {name: fn(rid) for name, (fn, _) in CATEGORY_MAPS.items()},
            "pair_key": (rid, text, *sorted(responses)),
            "human_ranking": ranking,
            "preferred_index": pref,
            "query_source": rec.get("query_source"),
            "models": rec.get("models"),
            "judge": rec.get("judge"),
        },
        where=where,
    )


def _check_full_set(pairs: list[PreferencePair]) -> None:
    """Warn (never fail) when a whole-release file has unexpected group counts: a changed revision changes the
    numbers, and two third-party scripts hard-code 1,247 rows for a newer one."""
    if len(pairs) not in (1247, 1250):
        return
    counts = Counter(p.meta["category"] for p in pairs)
    if len(pairs) == 1247 or dict(counts) != FULL_SET_COUNTS:
        warnings.warn(
            f"VL-RewardBench has {len(pairs)} rows with groups {dict(counts)}; the pinned 1,250-row revision has "
            f"{FULL_SET_COUNTS}: numbers are not comparable with the papers'",
            stacklevel=4,
        )
