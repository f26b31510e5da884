"""MMPR v1.2 -> pairs.

Follows `OpenGVLab/MMPR-v1.2` (docs/datasets.md §2.2): `meta.json` maps each subset name to {"root":
"MMPR-v1.2/images/<Source>", "annotation": "MMPR-v1.2/annotations/<name>.jsonl", "data_augment",
"repeat_time", "length"}; annotations are JSONL inside `annotations.zip` (or an unzipped `annotations/`
folder), one object per line with `image` (str, list[str] for multi-image, or absent for text-only),
`question` str (with or without `<image>`), `chosen` str, `rejected` str, optional `video` and extras
(`answer_gt`, `image_wh`, kept in meta). Images: `images.zip_aa/_ab/_ac` read as one split zip without joining
(or an `images/` folder, or `--images`); an image path is `root + "/" + image`, resolved with leading folders
stripped as needed; a missing `.gif` is retried as `.jpg`. Rules: the `<image>` count is normalised to the
number of images; rows with an empty side, chosen == rejected, a tag in a response or a missing image are
dropped and counted (14 RLAIF-V rows are known to reference a missing file); video rows are skipped. Source
key `mmpr_v1.2/<subset>`. License: the card says MIT; subsets from non-commercial upstreams are marked
`non-commercial` in meta.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from basereward.data.sources.media import Media, open_zip
from basereward.data.sources.readers import Result, each_row, jsonl_rows
from basereward.data.sources.text import Drop, as_list, require, response, user_prompt
from basereward.types import DataError, PreferencePair

NAME, KEY = "mmpr-v1.2", "mmpr_v1.2"
# Subsets whose upstream data is non-commercial (an NVIDIA filter, docs/datasets.md §2.2): matched by prefix.
NON_COMMERCIAL = (
    "dvqa_en",
    "iconqa",
    "inat_train2018",
    "llavar",
    "m3cot_train",
    "RLAIF-V-Dataset",
    "sam_cap_review_negative_en",
    "scienceqa_multi_choice_en",
    "super_clevr_en",
    "wildvision",
)
_OWN_KEYS = {"image", "question", "chosen", "rejected", "video"}


def convert(inp: Path, images: Path | None = None, split: str | None = None) -> Iterator[Result]:
    inp = Path(inp)
    root = inp.parent if inp.is_file() else inp
    meta_path = inp if inp.is_file() else inp / "meta.json"
    if not meta_path.is_file():
        raise DataError(f"[{NAME}] {meta_path}: meta.json not found")
    try:
        subsets = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"[{NAME}] {meta_path}: malformed JSON: {e.msg}") from e
    media = Media([images or _default_images(root)], NAME)
    ann_zip = open_zip(root / "annotations.zip", NAME) if (root / "annotations.zip").is_file() else None
    for subset, entry in subsets.items():
        if split is not None and subset != split:  # --split picks one subset
            continue
        if not isinstance(entry, dict) or "annotation" not in entry or "root" not in entry:
            raise DataError(f"[{NAME}] {meta_path}: entry {subset!r} needs 'annotation' and 'root'")
        fh, label = _open_annotation(entry["annotation"], root, ann_zip)
        with fh:
            rows = ((w, i, r) for i, (w, r) in enumerate(jsonl_rows(fh, f"[{NAME}] {label}")))
            yield from each_row(
                rows, lambda row, where, i, s=subset, e=entry: to_pairs(row, where, i, s, e["root"], media)
            )


def _default_images(root: Path) -> Path:
    for cand in (root / "images", root / "images.zip", root / "images.zip_aa"):
        if cand.exists():
            return cand
    return root  # annotation paths carry `MMPR-v1.2/images/...`; stripping leading folders finds them here


def _open_annotation(annotation: str, root: Path, ann_zip):
    parts = [p for p in annotation.split("/") if p]
    if ann_zip is not None:
        name = ann_zip.resolve(parts)
        if name is not None:
            return ann_zip.open_member(name), f"{ann_zip.name}!{name}"
    for i in range(len(parts)):
        p = root.joinpath(*parts[i:])
        if p.is_file():
            return p.open("rb"), str(p)
    raise DataError(f"[{NAME}] annotation file {annotation!r} not found in annotations.zip or under {root}")


def to_pairs(row: dict, where: str, index: int, subset: str, root: str, media: Media) -> list[PreferencePair]:
    if row.get("video"):
        raise Drop("video row (not converted)")
    question, chosen, rejected = require(row, where, "question", "chosen", "rejected")
    images = []
    for p in as_list(row.get("image")):
        found = media.find(f"{root}/{p}", where)
        if found is None and str(p).lower().endswith(".gif"):
            found = media.find(f"{root}/{str(p)[:-4]}.jpg", where)
        if found is None:
            raise Drop("missing image file")
        images.append(found)
    chosen, rejected = response(chosen, where, "chosen"), response(rejected, where, "rejected")
    if chosen.strip() == rejected.strip():
        raise Drop("chosen == rejected")
    license_ = "non-commercial" if subset.startswith(NON_COMMERCIAL) else "mit"
    extra = {k: v for k, v in row.items() if k not in _OWN_KEYS}
    return [
        PreferencePair(
            id=f"{KEY}/{subset}:{index}:0",
            source=f"{KEY}/{subset}",
            prompt=user_prompt(question, len(images), where),
            chosen=chosen,
            rejected=rejected,
            images=images,
            meta={**extra, "subset": subset, "image": row.get("image"), "license": license_},
        )
    ]
