"""The R1-Reward SFT data as one source (`--source mm-rlhf`): MM-RLHF DPO pairs + VLFeedback + RLHF-V.

The ~200k-pair set the paper used is not public as one file (docs/datasets.md §2.3); it is rebuilt from its
three public sources, each converted by its own module (which names its revision and schema). The input is a
folder holding the three downloads as `MM-RLHF/`, `VLFeedback/` and `RLHF-V-Dataset/` (names as on the Hub,
case-insensitive). Subsampling to ~200k is the mixture's job (`configs/data/r1-reward-sft.yaml`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from basereward.data.sources import mm_rlhf, rlhf_v, vlfeedback
from basereward.data.sources.readers import Result
from basereward.types import DataError

NAME = "mm-rlhf"
PARTS = ((("mm-rlhf",), mm_rlhf), (("vlfeedback",), vlfeedback), (("rlhf-v-dataset", "rlhf-v"), rlhf_v))


def convert(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    inp = Path(inp)
    if images is not None:
        raise DataError(f"[{NAME}] --images does not apply: each part's media are found in its own folder")
    folders = {p.name.lower(): p for p in inp.iterdir() if p.is_dir()} if inp.is_dir() else {}
    found = []
    for names, module in PARTS:
        hit = next((folders[n] for n in names if n in folders), None)
        if hit is None:
            raise DataError(
                f"[{NAME}] {inp}: no {names[0]!r} folder (expected MM-RLHF/, VLFeedback/, RLHF-V-Dataset/)"
            )
        found.append((hit, module))
    for folder, module in found:
        yield from module.convert(folder)
