"""The Tulu-3 family (full conversations in `chosen`/`rejected`) -> pairs: `tulu-3-if`, `olmo-2-mix`,
`tulu-3-wildchat`, `tulu-3-ultrafeedback-on-policy`.

Follows (docs/datasets.md §3.2-3.4), all parquet, split `train` unless named:
- `allenai/tulu-3-IF-augmented-on-policy-70b` (65,551 rows): `id` str, `prompt` str, `chosen`/`rejected`
  list[{content, role}] (the whole conversation).
- `allenai/olmo-2-0425-1b-preference-mix` (378,341 rows; columns as the sibling
`olmo-2-1124-7b-preference-mix`):
  the above plus `chosen_rating`/`rejected_rating` float64, `chosen_model`/`rejected_model` str, `source` str.
- `allenai/tulu-3-wildchat-ultrafeedback`, split `wildchat_reused_on_policy_70b` (17,242) or `_8b` (17,207),
  selected with `--split` (files `data/<split>-*.parquet`); prompts may be multi-turn.
- `allenai/tulu-3-ultrafeedback-cleaned-on-policy-70b` (41.6k), same columns as Tulu-3 IF.
Rule: prompt = chosen[:-1], chosen/rejected = the last assistant turns; a pair whose two sides have different
prompts is dropped. With ratings, scores and margin are filled; equal ratings (a tie) and a chosen rated below
the rejected are dropped and counted. License ODC-BY-1.0 (plus per-generator model terms).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from basereward.data.sources.readers import Result, each_row, read_rows
from basereward.data.sources.text import Drop, native_id, number, require, split_conversations
from basereward.types import PreferencePair

LICENSE = "odc-by-1.0"
KEYS = {  # --source name -> record source key (docs/datasets.md §4)
    "tulu-3-if": "tulu3_if",
    "olmo-2-mix": "olmo2",
    "tulu-3-wildchat": "wildchat",
    "tulu-3-ultrafeedback-on-policy": "uf_onpolicy",
}


def _convert(name: str, inp: Path, split: str | None) -> Iterator[Result]:
    return each_row(read_rows(inp, name, split), partial(to_pairs, key=KEYS[name]))


def convert_tulu3_if(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    return _convert("tulu-3-if", inp, split)


def convert_olmo2(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    return _convert("olmo-2-mix", inp, split)


def convert_wildchat(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    return _convert("tulu-3-wildchat", inp, split)


def convert_uf_onpolicy(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    return _convert("tulu-3-ultrafeedback-on-policy", inp, split)


def to_pairs(row: dict, where: str, index: int, key: str) -> list[PreferencePair]:
    chosen, rejected = require(row, where, "chosen", "rejected")
    prompt, chosen, rejected = split_conversations(chosen, rejected, where)
    sc, sr = number(row.get("chosen_rating")), number(row.get("rejected_rating"))
    if sc is not None and sr is not None:
        if sc == sr:
            raise Drop("tie")
        if sc < sr:
            raise Drop("chosen rated below rejected")
    meta = {k: row[k] for k in ("chosen_model", "rejected_model", "source") if row.get(k) is not None}
    return [
        PreferencePair(
            id=f"{key}:{native_id(row, 'id', index)}:0",
            source=key,
            prompt=prompt,
            chosen=chosen,
            rejected=rejected,
            score_chosen=sc,
            score_rejected=sr,
            margin=sc - sr if sc is not None and sr is not None else None,
            meta={**meta, "license": LICENSE},
        )
    ]
