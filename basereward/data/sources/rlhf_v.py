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

from basereward.data.sources.media import Media, image_cell
from basereward.data.sources.readers import Result, each_row, read_rows
from basereward.data.sources.text import native_id, require, response, user_prompt
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
    image = image_cell(row.get("image"), where, "image", media)
    idx = native_id(row, "idx", index)
    meta = {k: row.get(k) for k in ("origin_dataset", "origin_split", "idx", "ds_name", "image_path")}
    return [
        PreferencePair(
            id=f"{KEY}:{idx}:0",
            source=KEY,
            prompt=user_prompt(question, 1, where, "text.question"),
            chosen=response(chosen, where, "chosen"),
            rejected=response(rejected, where, "rejected"),
            images=[image],
            meta={**meta, "license": LICENSE},
        )
    ]
