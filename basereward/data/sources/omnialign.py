"""OmniAlign-V-DPO -> pairs.

Follows `PhoenixZ/OmniAlign-V-DPO` (docs/datasets.md §2.4; keys inferred from the viewer, verify on download):
`chart.jsonl`, `creation.jsonl`, `diagram.jsonl`, `ins_follow.jsonl`, `knowledge.jsonl`, `poster.jsonl` (the
file stem is the subset) with `prompt` str, `chosen` str (the SFT answer), `rejected` str (a judged off-intent
sample), `image` str or list[str] (paths inside `images.tar`); images read from `images.tar` without unpacking
(or `--images`). All `<image>` tags are stripped and one per image prepended. License unknown.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from basereward.data.sources.media import Media
from basereward.data.sources.readers import Result, data_files, each_row, file_rows
from basereward.data.sources.text import as_list, native_id, require, response, strip_tags, user_prompt
from basereward.types import PreferencePair

NAME, KEY, LICENSE = "omnialign-v-dpo", "omnialign_v_dpo", "unknown"


def convert(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    inp = Path(inp)
    folder = inp if inp.is_dir() else inp.parent
    media = Media([images or (folder / "images.tar" if (folder / "images.tar").is_file() else folder)], NAME)
    for f in data_files(inp, NAME, split):
        rows = ((w, i, r) for i, (w, r) in enumerate(file_rows(f, NAME)))
        yield from each_row(rows, lambda row, where, i, s=f.stem: to_pairs(row, where, i, s, media))


def to_pairs(row: dict, where: str, index: int, subset: str, media: Media) -> list[PreferencePair]:
    prompt, chosen, rejected = require(row, where, "prompt", "chosen", "rejected")
    refs = as_list(row.get("image", row.get("images")))
    images = [media.image(r, f"{where} image[{i}]") for i, r in enumerate(refs)]
    text = strip_tags(prompt) if isinstance(prompt, str) else prompt
    return [
        PreferencePair(
            id=f"{KEY}:{subset}-{native_id(row, 'id', index)}:0",
            source=KEY,
            prompt=user_prompt(text, len(images), where, "prompt"),
            chosen=response(chosen, where, "chosen"),
            rejected=response(rejected, where, "rejected"),
            images=images,
            meta={"subset": subset, "image": row.get("image"), "license": LICENSE},
        )
    ]
