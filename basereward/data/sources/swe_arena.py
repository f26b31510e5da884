"""SWE Arena -> pairs.

Follows `bigcode/swe-arena-preference-5k`, parquet in 3 shards (row count, license and the `vote_type`
vocabulary are unverified, docs/datasets.md §3.4). Schema: `type` str, `chat_session_id` str, `instruction`
str, `feedback` struct {`correctness`, `efficiency`, `explainability`, `maintainability`, `ui_ux_design`,
`vote_type`}, `models` struct {`model_A`, `model_B`}, `states` struct {`model_A`/`model_B`: {`messages`:
list of [role, text], `sandbox_logs_by_round`, ...}}.
Rule: the winner comes from `vote_type` (FastChat arena vocabulary: leftvote/rightvote/tievote/bothbad_vote;
also A/B spellings); tie and both-bad votes are dropped; only single-turn sessions are kept (arena sides
differ in earlier turns); user = `instruction`; chosen/rejected = the last assistant texts. Sandbox logs are
not read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from basereward.data.sources.readers import Result, each_row, read_rows
from basereward.data.sources.text import Drop, messages, require, response, user_prompt
from basereward.types import DataError, PreferencePair

NAME, KEY, LICENSE = "swe-arena", "swe_arena", "unknown"
_A = {"leftvote", "left", "a", "model_a", "a_better"}
_B = {"rightvote", "right", "b", "model_b", "b_better"}
_NONE = {"tievote", "tie", "bothbad_vote", "bothbad", "both_bad", "tie_vote"}


def convert(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    return each_row(read_rows(inp, NAME, split), to_pairs)


def winner(feedback: dict, where: str) -> str:
    vote = str((feedback or {}).get("vote_type") or "").strip().lower()
    if vote in _A:
        return "A"
    if vote in _B:
        return "B"
    if vote in _NONE:
        raise Drop("tie or both-bad vote")
    raise DataError(f"{where}: unknown feedback.vote_type {vote!r}")


def _side(states: dict, side: str, where: str) -> tuple[list[dict], str]:
    state = (states or {}).get(f"model_{side}")
    if not isinstance(state, dict):
        raise DataError(f"{where}: missing required field 'states.model_{side}'")
    msgs = messages(state.get("messages"), where, f"states.model_{side}.messages")
    if sum(m["role"] == "user" for m in msgs) != 1:
        raise Drop("multi-turn session")
    if msgs[-1]["role"] != "assistant":
        raise DataError(f"{where}: states.model_{side}.messages must end with an assistant turn")
    return msgs, msgs[-1]["content"]


def to_pairs(row: dict, where: str, index: int) -> list[PreferencePair]:
    feedback, states = require(row, where, "feedback", "states")
    win = winner(feedback, where)
    lose = "B" if win == "A" else "A"
    msgs_w, text_w = _side(states, win, where)
    _, text_l = _side(states, lose, where)
    instruction = row.get("instruction") or next(m["content"] for m in msgs_w if m["role"] == "user")
    models = row.get("models") or {}
    meta = {k: v for k, v in (feedback or {}).items() if k != "vote_type"}
    return [
        PreferencePair(
            id=f"{KEY}:{row.get('chat_session_id') or index}:0",
            source=KEY,
            prompt=user_prompt(instruction, 0, where, "instruction"),
            chosen=response(text_w, where, f"states.model_{win}"),
            rejected=response(text_l, where, f"states.model_{lose}"),
            meta={
                **meta,
                "vote_type": feedback.get("vote_type"),
                "type": row.get("type"),
                "chosen_model": models.get(f"model_{win}"),
                "rejected_model": models.get(f"model_{lose}"),
                "license": LICENSE,
            },
        )
    ]
