"""ms-swift reward-model data -> pairs (`ms-swift-rm`, an import format).

Follows ms-swift's RLHF/RM dataset format (`swift rlhf --rlhf_type rm`, as in the BaseReward author's Thyme
command, docs/datasets.md §1.1): one JSON object per line (or a JSON list) with `messages` list[{role,
content}] whose last turn is the chosen assistant reply, `rejected_response` str, optional `images` list[path
str or {path|bytes}]. Image paths are relative to `--images` (default: the data file's folder). As ms-swift
does, missing `<image>` tags are prepended (here to the first user turn, never the system turn). An import
format is a file users write, so what a public source's rows may be dropped for is bad input here
(`--on-error`): more tags than images, an empty response, a tag in a response (it would shift every later
image), chosen == rejected (data/convert.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from basereward.data.sources.media import Media, image_cell
from basereward.data.sources.readers import Result, each_row, read_rows
from basereward.data.sources.text import as_list, clean, messages, native_id, prompt_of, require, response
from basereward.types import IMAGE_TAG, DataError, PreferencePair

NAME, KEY = "ms-swift-rm", "ms_swift_rm"


def convert(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    inp = Path(inp)
    media = Media([images or (inp if inp.is_dir() else inp.parent)], NAME)
    return each_row(read_rows(inp, NAME, split), partial(to_pairs, media=media))


def to_pairs(row: dict, where: str, index: int, media: Media) -> list[PreferencePair]:
    msgs, rejected = require(row, where, "messages", "rejected_response")
    msgs = messages(msgs, where, "messages")
    if msgs[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last of 'messages' must be the chosen assistant reply")
    prompt = prompt_of(
        [{"role": m["role"], "content": clean(m["content"])} for m in msgs[:-1]], where, "messages"
    )
    images = []
    for i, ref in enumerate(as_list(row.get("images"))):
        loc = f"{where} images[{i}]"
        images.append(
            media.image(ref, loc) if isinstance(ref, str) else image_cell(ref, loc, "images", media)
        )
    n_tags = sum(m["content"].count(IMAGE_TAG) for m in prompt)
    if n_tags > len(images):
        raise DataError(
            f"{where}: image placeholder count mismatch: 'messages' has {n_tags} {IMAGE_TAG} tag(s) but the "
            f"row lists {len(images)} image(s)"
        )
    first_user = next(i for i, m in enumerate(prompt) if m["role"] == "user")
    prompt[first_user]["content"] = (IMAGE_TAG + "\n") * (len(images) - n_tags) + prompt[first_user][
        "content"
    ]
    return [
        PreferencePair(
            id=f"{KEY}:{native_id(row, 'id', index)}:0",
            source=str(row.get("source") or KEY),
            prompt=prompt,
            chosen=response(msgs[-1]["content"], where, "messages[-1]", strict=True),
            rejected=response(rejected, where, "rejected_response", strict=True),
            images=images,
        )
    ]
