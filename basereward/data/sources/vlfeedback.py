"""VLFeedback -> pairs (one of the three R1-Reward SFT sources).

Follows `MMInstruction/VLFeedback` (80,258 rows; docs/datasets.md §2.3b): `vlfeedback_80k.jsonl` with `id`
str, `prompt` str, `models` list[str], `img_path` str (a path inside `merged_images.zip`), `completions`: list
of {`annotations`: {"Helpfulness" | "Ethical Considerations" | "Visual Faithfulness": {`Rating`: str "1"-"5",
`Rationale`: str}}, `model`: str, `response`: str}. A completion's score is the mean of its numeric ratings
(non-numeric ones such as "N/A" are ignored; a completion with none is unscored). Pairs: every i < j with
different scores, chosen = the higher; margin = the score gap. Media: `--images` or `merged_images.zip` / the
input folder. License unknown (check the card).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from basereward.data.sources.media import Media
from basereward.data.sources.readers import Result, each_row, read_rows
from basereward.data.sources.text import Drop, clean, number, require, user_prompt
from basereward.types import IMAGE_TAG, DataError, PreferencePair

NAME, KEY, LICENSE = "vlfeedback", "vlfeedback", "unknown"
ASPECTS = ("Helpfulness", "Ethical Considerations", "Visual Faithfulness")


def convert(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    inp = Path(inp)
    folder = inp if inp.is_dir() else inp.parent
    data = inp / "vlfeedback_80k.jsonl" if inp.is_dir() and (inp / "vlfeedback_80k.jsonl").is_file() else inp
    if images is None:
        images = folder / "merged_images.zip" if (folder / "merged_images.zip").is_file() else folder
    return each_row(read_rows(data, NAME, split), partial(to_pairs, media=Media([images], NAME)))


def score(completion: dict) -> float | None:
    """Mean of the numeric aspect ratings; None when there is none (ratings are strings, sometimes "N/A")."""
    ann = completion.get("annotations") or {}
    vals = [number((ann.get(a) or {}).get("Rating")) for a in ASPECTS]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def to_pairs(row: dict, where: str, index: int, media: Media) -> list[PreferencePair]:
    id_, prompt, img_path, completions = require(row, where, "id", "prompt", "img_path", "completions")
    if not isinstance(completions, list):
        raise DataError(f"{where}: field 'completions' must be a list")
    scored = []
    for i, c in enumerate(completions):
        # the cause first, the item after the colon: skips are counted by the text before it
        if not isinstance(c, dict):
            what = f"item {i} is {type(c).__name__}"
            raise DataError(f"{where}: field 'completions' must be a list of objects: {what}")
        if not isinstance(c.get("annotations") or {}, dict):
            what = f"item {i} has 'annotations' of type {type(c['annotations']).__name__}"
            raise DataError(f"{where}: field 'completions' must be a list of objects: {what}")
        text, s = c.get("response"), score(c)
        if isinstance(text, str) and text.strip() and IMAGE_TAG not in text and s is not None:
            scored.append((s, clean(text), c.get("model")))
    if len(scored) < 2:
        raise Drop("fewer than 2 scored completions")
    image = media.image(img_path, where)
    user = user_prompt(prompt, 1, where, "prompt")
    pairs = []
    for i in range(len(scored)):
        for j in range(i + 1, len(scored)):
            if scored[i][0] == scored[j][0]:
                continue
            hi, lo = (scored[i], scored[j]) if scored[i][0] > scored[j][0] else (scored[j], scored[i])
            (sc, tc, mc), (sr, tr, mr) = hi, lo
            pairs.append(
                PreferencePair(
                    id=f"{KEY}:{id_}:{len(pairs)}",
                    source=KEY,
                    prompt=user,
                    chosen=tc,
                    rejected=tr,
                    images=[image],
                    score_chosen=sc,
                    score_rejected=sr,
                    margin=sc - sr,
                    meta={"chosen_model": mc, "rejected_model": mr, "img_path": img_path, "license": LICENSE},
                )
            )
    if not pairs:
        raise Drop("all completions tied")
    return pairs
