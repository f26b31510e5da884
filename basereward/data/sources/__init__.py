"""The source table: `basereward data convert --source NAME` -> the converter for that public dataset.

A converter is `convert(input: Path, images: Path | None, split: str | None) -> Iterator[(where, result)]`,
one item per raw row, where `result` is the row's pairs, a `DataError` (bad input, subject to `--on-error`) or
a `Drop` (the source's own rules leave the row out; counted). Each converter module's docstring names the
public revision and schema it follows (docs/datasets.md). Modules are imported only when their source is
used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

# name -> ("module:function", one line). Names and the records' `source` keys: docs/datasets.md §4.
SOURCES: dict[str, tuple[str, str]] = {
    "rlaif-v": ("rlaif_v:convert", "openbmb/RLAIF-V-Dataset (parquet, embedded images)"),
    "mmpr-v1.2": ("mmpr:convert", "OpenGVLab/MMPR-v1.2 (meta.json + annotations.zip + split images.zip)"),
    "mm-rlhf": ("r1_reward_sft:convert", "R1-Reward SFT sources: MM-RLHF/ + VLFeedback/ + RLHF-V-Dataset/"),
    "mm-rlhf-dpo": ("mm_rlhf:convert", "yifanzhang114/MM-RLHF dpo_pairs.jsonl (+ media folders or zips)"),
    "vlfeedback": ("vlfeedback:convert", "MMInstruction/VLFeedback (jsonl + merged_images.zip)"),
    "rlhf-v": ("rlhf_v:convert", "openbmb/RLHF-V-Dataset (parquet, embedded images)"),
    "mmif": ("sharegpt:convert_mmif", "ChrisDing1105/MMIF-23k (sharegpt preference JSON + images)"),
    "omnialign-v-dpo": ("omnialign:convert", "PhoenixZ/OmniAlign-V-DPO (jsonl per subset + images.tar)"),
    "ultrafeedback-hard": (
        "ultrafeedback:convert_hard",
        "openbmb/UltraFeedback -> max-vs-min pair per prompt",
    ),
    "ultrafeedback-all": ("ultrafeedback:convert_all", "openbmb/UltraFeedback -> every non-tied pair"),
    "shp": ("shp:convert", "stanfordnlp/SHP (subreddit folders of JSONL)"),
    "tulu-3-if": ("tulu:convert_tulu3_if", "allenai/tulu-3-IF-augmented-on-policy-70b (parquet)"),
    "olmo-2-mix": ("tulu:convert_olmo2", "allenai/olmo-2-0425-1b-preference-mix (parquet)"),
    "tulu-3-wildchat": (
        "tulu:convert_wildchat",
        "allenai/tulu-3-wildchat-ultrafeedback (--split a wildchat split)",
    ),
    "tulu-3-ultrafeedback-on-policy": (
        "tulu:convert_uf_onpolicy",
        "allenai/tulu-3-ultrafeedback-cleaned-on-policy-70b",
    ),
    "swe-arena": ("swe_arena:convert", "bigcode/swe-arena-preference-5k (parquet)"),
    "ms-swift-rm": ("swift:convert", "ms-swift RM format: messages + rejected_response + images"),
    "llamafactory-pairwise": ("sharegpt:convert_llamafactory", "LLaMA-Factory pairwise (sharegpt or alpaca)"),
    "pairs": ("pairs:convert", "basereward pair JSONL"),
}

# Files users write rather than public releases: every rule a row breaks is bad input (`--on-error`), as in the
# pair reader, where a public source's known quirks (empty sides, identical sides) are counted Drops.
IMPORT_FORMATS = frozenset({"ms-swift-rm", "llamafactory-pairwise", "pairs"})


def converter(name: str) -> Callable:
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; choose one of: {', '.join(SOURCES)}")
    module, func = SOURCES[name][0].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), func)
