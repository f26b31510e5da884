"""MM-RLHF DPO pairs -> pairs (one of the three R1-Reward SFT sources).

Follows `yifanzhang114/MM-RLHF` file `dpo_pairs.jsonl` (docs/datasets.md §2.3a): one JSON object per line with
`prompt` str, `chosen` str, `rejected` str, and `image` (a path relative to the media root) or `video` (a
frames folder); optional `chosen_reason`, `rejected_reason`, `is_tie`, `ls_factor` as read by the owners' DPO
loader; the two reasons (what each response gets right or wrong) become the pair's `chosen_critique` /
`rejected_critique` (a blank or non-text reason is none, like a junk score elsewhere) and stay in meta as they
were. Media: the unzipped `long/ short/ mcq/ safety/` folders or the zips themselves (`--images`, default:
the input folder and any `*.zip` in it). Like the owners' loader, every `<image>` is stripped and one
re-prepended. Video rows are skipped (counted; no frame policy is applied here), ties are dropped. License
unknown (check the card of the revision you pin).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from basereward.data.sources.media import Media
from basereward.data.sources.readers import Result, each_row, read_rows
from basereward.data.sources.text import Drop, require, response, strip_tags, user_prompt
from basereward.types import PreferencePair

NAME, KEY, LICENSE = "mm-rlhf-dpo", "mm_rlhf", "unknown"


def convert(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    inp = Path(inp)
    folder = inp if inp.is_dir() else inp.parent
    data = inp / "dpo_pairs.jsonl" if inp.is_dir() else inp
    media = Media([images] if images else [folder, *sorted(folder.glob("*.zip"))], NAME)
    return each_row(read_rows(data, NAME, split), partial(to_pairs, media=media))


def to_pairs(row: dict, where: str, index: int, media: Media) -> list[PreferencePair]:
    if row.get("video"):
        raise Drop("video row (not converted)")
    if row.get("is_tie"):
        raise Drop("tie")
    prompt, chosen, rejected = require(row, where, "prompt", "chosen", "rejected")
    images = [media.image(row["image"], where)] if row.get("image") else []
    meta = {k: row[k] for k in ("image", "chosen_reason", "rejected_reason", "ls_factor") if k in row}
    return [
        PreferencePair(
            id=f"{KEY}:{index}:0",
            source=KEY,
            prompt=user_prompt(
                strip_tags(prompt) if isinstance(prompt, str) else prompt, len(images), where, "prompt"
            ),
            chosen=response(chosen, where, "chosen"),
            rejected=response(rejected, where, "rejected"),
            images=images,
            chosen_critique=_critique(row.get("chosen_reason")),
            rejected_critique=_critique(row.get("rejected_reason")),
            meta={**meta, "license": LICENSE},
        )
    ]


def _critique(value: Any) -> str | None:
    # optional upstream text: a missing or junk value leaves the pair without a critique rather than dropping it
    return value if isinstance(value, str) and value.strip() else None
