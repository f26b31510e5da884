"""SHP -> pairs.

Follows `stanfordnlp/SHP` (docs/datasets.md §3.5): 18 subreddit folders, each with `train.json`,
`validation.json`, `test.json` in JSON-lines form (348,718 / 18,436 / 18,409 rows); `--split` picks one
(default `train`). Schema: `post_id` str, `domain` str, `upvote_ratio` float, `history` str (the prompt),
`c_root_id_A`/`_B` str, `created_at_utc_A`/`_B` int, `score_A`/`_B` int, `human_ref_A`/`_B` str (the two
comments), `labels` int (1 = A preferred, 0 = B), `seconds_difference` float, `score_ratio` float.
Rule: chosen/rejected by `labels`; margin = log(score_ratio). No filtering (the card's score_ratio >= 2 and <=
5 pairs per post advice can be applied downstream from meta). License: Reddit API terms only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from basereward.data.sources.readers import Result, each_row, read_rows
from basereward.data.sources.text import number, require, response, user_prompt
from basereward.types import DataError, PreferencePair

NAME, KEY, LICENSE = "shp", "shp", "reddit-api-terms"


def convert(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    return each_row(read_rows(inp, NAME, split or "train"), to_pairs)


def to_pairs(row: dict, where: str, index: int) -> list[PreferencePair]:
    history, a, b, label = require(row, where, "history", "human_ref_A", "human_ref_B", "labels")
    if label not in (0, 1) or isinstance(label, bool):
        raise DataError(f"{where}: field 'labels' must be 0 or 1, got {label!r}")
    (chosen, sc), (rejected, sr) = ((a, row.get("score_A")), (b, row.get("score_B")))[
        :: 1 if label == 1 else -1
    ]
    ratio = number(row.get("score_ratio"))
    meta = {k: row.get(k) for k in ("post_id", "domain", "upvote_ratio", "score_ratio", "seconds_difference")}
    return [
        PreferencePair(
            id=f"{KEY}:{row.get('post_id', index)}:{row.get('c_root_id_A')}-{row.get('c_root_id_B')}",
            source=KEY,
            prompt=user_prompt(history, 0, where, "history"),
            chosen=response(chosen, where, "human_ref_A" if label == 1 else "human_ref_B"),
            rejected=response(rejected, where, "human_ref_B" if label == 1 else "human_ref_A"),
            score_chosen=number(sc),
            score_rejected=number(sr),
            margin=math.log(ratio) if ratio is not None and ratio > 0 else None,
            meta={**meta, "license": LICENSE},
        )
    ]
