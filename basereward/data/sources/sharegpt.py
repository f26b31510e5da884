"""LLaMA-Factory pairwise data -> pairs: `llamafactory-pairwise` (import format) and `mmif` (MMIF-23k, which
ships in that format).

Follows LLaMA-Factory's `data/README.md` preference ("ranking": true) formats:
- sharegpt: `conversations` list[{from: human|gpt|system, value}] ending with a human turn, `chosen` and
  `rejected` {from: gpt, value} (or plain strings), optional `system` str, `images` list[str path];
  OpenAI-style {role, content} tags are accepted too;
- alpaca: `instruction` str, `input` str, `chosen` str, `rejected` str, optional `system`, `history`
  list[[query, answer]], `images`.
`ChrisDing1105/MMIF-23k` (v1.0 2025-04-26 / v2 2025-09-16, DPO file a JSON list in the sharegpt form above,
keys and license unverified, docs/datasets.md §2.4). Image paths are relative to `--images` (default: the data
file's folder). `<image>` tags are kept when their count matches the images; MMIF rows with another count get
them re-placed at the start of the first user turn. `llamafactory-pairwise` is an import format (a file users
write, which LLaMA-Factory itself would refuse), so there a prompt with tags whose count differs from the
images, an empty response, a tag in a response and chosen == rejected are bad input (`--on-error`); a prompt
with no tag at all still gets them prepended.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from basereward.data.sources.media import Media, image_cell
from basereward.data.sources.readers import Result, each_row, read_rows
from basereward.data.sources.text import (
    as_list,
    messages,
    native_id,
    prompt_of,
    require,
    response,
    with_images,
)
from basereward.types import IMAGE_TAG, DataError, PreferencePair


def convert_llamafactory(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    return _convert("llamafactory-pairwise", "llamafactory", "unknown", inp, images, split, strict=True)


def convert_mmif(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    return _convert("mmif", "mmif", "unknown", inp, images, split, strict=False)


def _convert(name, key, license_, inp, images, split, strict) -> Iterator[Result]:
    inp = Path(inp)
    media = Media([images or (inp if inp.is_dir() else inp.parent)], name)
    to = partial(to_pairs, key=key, license_=license_, media=media, strict=strict)
    return each_row(read_rows(inp, name, split), to)


def _text(value, where: str, field: str, strict: bool) -> str:
    if isinstance(value, dict):
        value = value.get("value", value.get("content"))
    return response(value, where, field, strict=strict)


def _prompt(row: dict, where: str) -> list[dict]:
    if "conversations" in row:
        msgs = messages(row["conversations"], where, "conversations")
    else:
        (instruction,) = require(row, where, "instruction")
        msgs = []
        for turn in row.get("history") or []:
            msgs += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
        query = instruction + ("\n" + row["input"] if row.get("input") else "")
        msgs.append({"role": "user", "content": query})
    if row.get("system") and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": row["system"]})
    return prompt_of(msgs, where, "conversations" if "conversations" in row else "instruction")


def to_pairs(
    row: dict, where: str, index: int, key: str, license_: str, media: Media, strict: bool = False
) -> list[PreferencePair]:
    chosen, rejected = require(row, where, "chosen", "rejected")
    prompt = _prompt(row, where)
    images = []
    for i, ref in enumerate(as_list(row.get("images"))):
        loc = f"{where} images[{i}]"
        images.append(
            media.image(ref, loc) if isinstance(ref, str) else image_cell(ref, loc, "images", media)
        )
    n_tags = sum(m["content"].count(IMAGE_TAG) for m in prompt)
    if strict and n_tags and n_tags != len(images):
        raise DataError(
            f"{where}: image placeholder count mismatch: the prompt has {n_tags} {IMAGE_TAG} tag(s) but the "
            f"row lists {len(images)} image(s)"
        )
    return [
        PreferencePair(
            id=f"{key}:{native_id(row, 'id', index)}:0",
            source=key,
            prompt=with_images(prompt, len(images), where),
            chosen=_text(chosen, where, "chosen", strict),
            rejected=_text(rejected, where, "rejected", strict),
            images=images,
            meta={"license": license_},
        )
    ]
