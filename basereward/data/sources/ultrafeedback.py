"""UltraFeedback -> Ultra-Hard (`ultrafeedback-hard`) and Ultra-All (`ultrafeedback-all`) pairs.

Follows raw `openbmb/UltraFeedback`, split `train`, at revision 40b436560ca83a8dba36114c22ab3c66e43f6d5e or
later (the 2023-12-29 fix of 2,628 wrong `overall_score`s; docs/datasets.md §3.1). Schema: `source` str
(evol_instruct, false_qa, flan, sharegpt, truthful_qa, ultrachat), `instruction` str, `models` list[str],
`completions` list of {`model`, `principle`, `custom_system_prompt`, `response` str, `critique`,
`overall_score` float 1-10, `fine-grained_score` float, `annotations`}, `correct_answers`,
`incorrect_answers`.

s = `overall_score` (parsed defensively; a completion without a numeric score or a response is unscored).
- hard: one pair per prompt, chosen = argmax and rejected = argmin of (s, fine-grained score), i.e. ties on s
are
  broken by the fine-grained score; the prompt is skipped when s(chosen) == s(rejected) or it has < 2 scored
  completions. margin = s(chosen) - s(rejected). (~63k pairs, the paper's "largest score difference".)
- all: every i < j with s_i != s_j, chosen = the higher s, in completion order.
`custom_system_prompt` is dropped (as HF's binarised copy does). License MIT (HF card).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from basereward.data.sources.readers import Result, each_row, read_rows
from basereward.data.sources.text import Drop, clean, number, require, user_prompt
from basereward.types import IMAGE_TAG, DataError, PreferencePair

LICENSE = "mit"


def convert_hard(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    return each_row(read_rows(inp, "ultrafeedback-hard", split), partial(to_pairs, hard=True))


def convert_all(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    return each_row(read_rows(inp, "ultrafeedback-all", split), partial(to_pairs, hard=False))


def scored(completions, where: str) -> list[tuple[float, float, str, str]]:
    """(s, fine-grained score, response, model) for the completions that can be ranked."""
    if not isinstance(completions, list):
        raise DataError(f"{where}: field 'completions' must be a list")
    out = []
    for c in completions:
        s, text = number(c.get("overall_score")), c.get("response")
        if s is None or not isinstance(text, str) or not text.strip() or IMAGE_TAG in text:
            continue
        fine = number(c.get("fine-grained_score"))
        out.append((s, fine if fine is not None else float("-inf"), clean(text), c.get("model")))
    return out


def to_pairs(row: dict, where: str, index: int, hard: bool) -> list[PreferencePair]:
    instruction, completions = require(row, where, "instruction", "completions")
    prompt = user_prompt(instruction, 0, where, "instruction")
    comps = scored(completions, where)
    if len(comps) < 2:
        raise Drop("fewer than 2 scored completions")
    key = "ultra_hard" if hard else "ultra_all"
    if hard:
        # max/min keep the first of equal keys, so equal (s, fine) completions resolve in completion order
        hi, lo = max(comps, key=lambda c: c[:2]), min(comps, key=lambda c: c[:2])
        candidates = [(hi, lo)] if hi[0] != lo[0] else []
    else:
        candidates = [
            (a, b) if a[0] > b[0] else (b, a)
            for i, a in enumerate(comps)
            for b in comps[i + 1 :]
            if a[0] != b[0]
        ]
    if not candidates:
        raise Drop("all completions tied")
    return [
        PreferencePair(
            id=f"{key}:{index}:{k}",
            source=key,
            prompt=prompt,
            chosen=c[2],
            rejected=r[2],
            score_chosen=c[0],
            score_rejected=r[0],
            margin=c[0] - r[0],
            meta={
                "subset": row.get("source"),
                "chosen_model": c[3],
                "rejected_model": r[3],
                "fine_grained_chosen": None if c[1] == float("-inf") else c[1],
                "fine_grained_rejected": None if r[1] == float("-inf") else r[1],
                "license": LICENSE,
            },
        )
        for k, (c, r) in enumerate(candidates)
    ]
