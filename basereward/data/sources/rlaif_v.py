"""RLAIF-V -> pairs.

Follows `openbmb/RLAIF-V-Dataset`, config `default`, split `train`, the 83,132-row parquet release (older
revisions: 33.8k, 44,757 rows, same columns; pin the commit you downloaded with `--revision`). Schema
(docs/datasets.md §2.1): `ds_name` str, `image` Image struct {bytes, path} (embedded), `question` str (no
`<image>` tag), `chosen` str, `rejected` str, `origin_dataset` str, `origin_split` str, `idx` str,
`image_path` str. License CC-BY-NC-4.0. Also reads a `datasets.save_to_disk` copy (same columns).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from basereward.data.sources.media import Media, image_cell
from basereward.data.sources.readers import Result, each_row, read_rows
from basereward.data.sources.text import native_id, require, response, user_prompt
from basereward.types import PreferencePair

NAME, KEY, LICENSE = "rlaif-v", "rlaif_v", "cc-by-nc-4.0"


def convert(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    media = Media([images], NAME) if images else None  # only for copies whose Image struct holds a path
    return each_row(read_rows(inp, NAME, split), partial(to_pairs, media=media))


def to_pairs(row: dict, where: str, index: int, media: Media | None = None) -> list[PreferencePair]:
    question, chosen, rejected = require(row, where, "question", "chosen", "rejected")
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
            question_field="question",
        )
    ]


def openbmb_pair(
    row: dict,
    where: str,
    index: int,
    question,
    chosen,
    rejected,
    *,
    media: Media | None,
    key: str,
    license: str,
    question_field: str,
) -> PreferencePair:
    """The pair of an openbmb release row (RLAIF-V, and RLHF-V once its `text` JSON is parsed): one embedded
    image, the question gets the image tag, the provenance columns go to meta."""
    image = image_cell(row.get("image"), where, "image", media)
    idx = native_id(row, "idx", index)
    meta = {k: row.get(k) for k in ("origin_dataset", "origin_split", "idx", "ds_name", "image_path")}
    return PreferencePair(
        id=f"{key}:{idx}:0",
        source=key,
        prompt=user_prompt(question, 1, where, question_field),
        chosen=response(chosen, where, "chosen"),
        rejected=response(rejected, where, "rejected"),
        images=[image],
        meta={**meta, "license": license},
    )
