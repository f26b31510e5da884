"""The text rules every converter applies (docs/datasets.md §1 and 5): `<image>` placeholder
normalisation, model-token stripping, message-list parsing and the "prompt = chosen[:-1]" split of full
conversations. Also `Drop`, the signal for a row a source's rules leave out (ties, video, mismatched
prefixes): such rows are counted, never errors.
"""

from __future__ import annotations

import math
import re
from typing import Any

from basereward.types import IMAGE_TAG, VIDEO_TAG, DataError

# Backbone-specific tokens that leak into public data (Qwen-VL, InternVL); they must never reach our chat
# template.
_MODEL_TOKENS = re.compile(
    r"<\|(?:image_pad|video_pad|vision_start|vision_end|vision_pad)\|>|</?img>|<IMG_CONTEXT>"
)
# A tag plus the newline that conventionally follows it, so stripping leaves no blank first line.
_TAG = re.compile(r"<image>\n?")
_USER_ROLES = {"user", "human"}
_ASSISTANT_ROLES = {"assistant", "gpt", "model", "bot", "chatbot"}


class Drop(Exception):  # noqa: N818 - a counted outcome, not an error
    """A row the source's own rules leave out (tie, video, multi-turn arena, ...). `reason` is the stats
    key."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def clean(text: str) -> str:
    """Remove model-specific vision tokens; keep `<image>` tags."""
    return _MODEL_TOKENS.sub("", text)


def strip_tags(text: str) -> str:
    """Remove every `<image>` tag (and model token), as the LLaVA-style loaders do before re-prepending."""
    return _TAG.sub("", clean(text)).strip()


def with_images(prompt: list[dict], k: int, where: str) -> list[dict]:
    """Make the prompt hold exactly `k` `<image>` tags in its user turns. A prompt that already has `k` keeps
    them where they are (their position can matter); any other count is stripped and `k` tags are prepended
    to the first user turn (the ms-swift / InternVL convention)."""
    prompt = [{"role": m["role"], "content": clean(m["content"])} for m in prompt]
    if sum(m["content"].count(IMAGE_TAG) for m in prompt) == k:
        return prompt
    out = [{"role": m["role"], "content": strip_tags(m["content"])} for m in prompt]
    first = next((i for i, m in enumerate(out) if m["role"] == "user"), None)
    if first is None:
        raise DataError(f"{where}: a prompt with images needs a user turn")
    out[first]["content"] = (IMAGE_TAG + "\n") * k + out[first]["content"]
    return out


def user_prompt(text: Any, k: int, where: str, field: str = "question") -> list[dict]:
    """A single user turn from a source's question text, normalised to `k` image tags."""
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: field '{field}' must be a non-empty string")
    return with_images([{"role": "user", "content": text}], k, where)


def response(value: Any, where: str, field: str, *, strict: bool = False) -> str:
    """A chosen/rejected text: non-empty, no tags (a tag breaks image alignment). A public source's row that
    breaks either is a Drop (a known upstream quirk, docs/datasets.md §1); with `strict` (the import formats:
    files users write) it is bad input, worded as the pair reader words it."""
    if value is None:
        raise DataError(f"{where}: missing required field '{field}'")
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{field}' must be a string, got {type(value).__name__}")
    text = clean(value)
    if not text.strip():
        if strict:
            raise DataError(f"{where}: empty response in field '{field}'")
        raise Drop(f"empty {field}")
    if IMAGE_TAG in text or VIDEO_TAG in text:
        if strict:
            raise DataError(
                f"{where}: field '{field}' contains an {IMAGE_TAG}/{VIDEO_TAG} tag: responses hold none"
            )
        raise Drop("<image> tag in a response")
    return text


def require(row: dict, where: str, *fields: str) -> list[Any]:
    """The values of required fields; a missing one is a DataError naming the field."""
    missing = [f for f in fields if row.get(f) is None]
    if missing:
        raise DataError(f"{where}: missing required field '{missing[0]}'")
    return [row[f] for f in fields]


def messages(value: Any, where: str, field: str) -> list[dict]:
    """A message list in any public spelling ({role, content} or sharegpt {from, value}; [role, text] pairs)
    mapped to {role: system|user|assistant, content: str}."""
    if not isinstance(value, list | tuple) or not value:
        raise DataError(f"{where}: field '{field}' must be a non-empty list of messages")
    out = []
    for i, m in enumerate(value):
        if isinstance(m, dict):
            role, content = m.get("role", m.get("from")), m.get("content", m.get("value"))
        elif isinstance(m, list | tuple) and len(m) == 2:
            role, content = m
        else:
            raise DataError(f"{where}: {field}[{i}] is not a message")
        role = str(role).lower()
        role = "user" if role in _USER_ROLES else "assistant" if role in _ASSISTANT_ROLES else role
        if role not in ("system", "user", "assistant"):
            raise DataError(f"{where}: {field}[{i}] has an unknown role {role!r}")
        if not isinstance(content, str):
            raise DataError(f"{where}: {field}[{i}].content must be a string, got {type(content).__name__}")
        out.append({"role": role, "content": content})
    return out


def prompt_of(msgs: list[dict], where: str, field: str) -> list[dict]:
    """Check that a prompt ends with a user turn (the record's rule) and return it."""
    if not msgs or msgs[-1]["role"] != "user":
        raise DataError(f"{where}: the prompt in '{field}' must end with a user turn")
    return msgs


def split_conversations(chosen: Any, rejected: Any, where: str) -> tuple[list[dict], str, str]:
    """Full conversations (Tulu/OLMo/WildChat) -> (prompt, chosen, rejected). The prompt is `chosen[:-1]`; the
    two sides must share it, else the pair compares different contexts and is dropped (docs/datasets.md §5, item 4)."""
    c, r = messages(chosen, where, "chosen"), messages(rejected, where, "rejected")
    if c[-1]["role"] != "assistant" or r[-1]["role"] != "assistant":
        raise DataError(f"{where}: 'chosen' and 'rejected' must end with an assistant turn")
    if [dict(m) for m in c[:-1]] != [dict(m) for m in r[:-1]]:
        raise Drop("chosen/rejected prompts differ")
    prompt = prompt_of([{"role": m["role"], "content": clean(m["content"])} for m in c[:-1]], where, "chosen")
    return prompt, response(c[-1]["content"], where, "chosen"), response(r[-1]["content"], where, "rejected")


def number(value: Any) -> float | None:
    """A score that may be a float, an int, a numeric string or junk ("N/A"): None unless finite."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def native_id(row: dict, key: str, index: int) -> Any:
    """The row's own id for the pair id (`<source>:<native id or row idx>:<pair idx>`), else its row index."""
    value = row.get(key)
    return index if value is None or value == "" else value


def as_list(value: Any) -> list:
    """A field that is a scalar, a list, or absent (MMPR `image`)."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
