"""RLHF-V -> pairs (one of the three R1-Reward SFT sources).

Follows `openbmb/RLHF-V-Dataset`, the single-parquet release of 5,733 rows (docs/datasets.md §2.3c). Schema:
`ds_name` str, `image` Image struct {bytes, path} (embedded), `text` str holding JSON
`{"question", "chosen", "rejected"}`, `origin_dataset` str, `origin_split` str, `idx` int64, `image_path` str.
`chosen` is a human correction of `rejected`; rows with an empty chosen are dropped. License CC-BY-NC-4.0.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from basereward.data.sources.media import Media
from basereward.data.sources.readers import Result, each_row, read_rows
from basereward.data.sources.rlaif_v import openbmb_pair
from basereward.data.sources.text import require
from basereward.types import DataError, PreferencePair

NAME, KEY, LICENSE = "rlhf-v", "rlhf_v", "cc-by-nc-4.0"


def convert(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    media = Media([images], NAME) if images else None
    return each_row(read_rows(inp, NAME, split), partial(to_pairs, media=media))


def to_pairs(row: dict, where: str, index: int, media: Media | None = None) -> list[PreferencePair]:
    (text,) = require(row, where, "text")
    try:
        t = json.loads(text)
    except (TypeError, json.JSONDecodeError) as e:
        raise DataError(f"{where}: field 'text' is not a JSON object string: {e}") from e
    if not isinstance(t, dict):
        raise DataError(f"{where}: field 'text' must hold a JSON object")
    question, chosen, rejected = require(t, where, "question", "chosen", "rejected")
    return [
        openbmb_pair(
            row,
            where,
            index,
            question,
            chosen,
            rejected,
            media=media,
            key=KEY,
            license=LICENSE,
            question_field="text.question",
        )
    ]
