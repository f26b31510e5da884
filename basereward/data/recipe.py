"""Mixture recipes (`configs/data/*.yaml`): the typed schema and its validation. Values only; the build lives
in basereward/data/mixture.py. Every shipped recipe is loaded by a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from basereward.config import load_yaml, validate
from basereward.data.shards import FORMATS
from basereward.data.sources import SOURCES


@dataclass(frozen=True)
class SourceSpec:
    name: str  # label in the report (and the staging folder name)
    path: str  # raw download (with `converter`), or pairs: a shard folder / pair JSONL; relative to root
    converter: str | None = None  # a `data convert --source` name; None = `path` already holds pairs
    split: str | None = None  # passed to the converter (HF split, SHP split, MMPR subset)
    images: str | None = None  # image root for the converter, relative to root
    revision: str | None = None  # Hub commit downloaded; written to meta.revision
    max_pairs: int | None = None  # keep at most this many pairs (seeded subsample)
    weight: float | None = None  # multiply the source's size (fractions subsample, > 1 repeats)

    def __post_init__(self):
        if not self.name or not self.path:
            raise ValueError("name and path must not be empty")
        if self.converter is not None and self.converter not in SOURCES:
            raise ValueError(f"converter {self.converter!r} is not one of {', '.join(SOURCES)}")
        if self.max_pairs is not None and self.max_pairs < 0:
            raise ValueError(f"max_pairs must be a non-negative integer, got {self.max_pairs}")
        if self.weight is not None and self.weight < 0:
            raise ValueError(f"weight must be a non-negative number, got {self.weight}")


@dataclass(frozen=True)
class Recipe:
    name: str  # the mixture's name
    sources: tuple[SourceSpec, ...]  # in priority order: dedup keeps the first copy
    seed: int = 0  # selection and shuffle seed
    root: str = "."  # folder that relative source paths start from (--root overrides)
    format: str = "arrow"  # output: arrow (memory-mapped, for training), parquet, jsonl
    image_mode: str = "bytes"  # converted images: embedded bytes, or files under OUT/images
    on_error: str = "fail"  # bad raw rows: fail, or skip and count
    dedup: bool = True  # drop exact duplicate pairs (normalised prompt + image hashes + responses)
    tokenizer: str | None = None  # tokenizer.json (or folder) for real token counts; None = whitespace only
    token_sample: int = 20000  # rows tokenized when `tokenizer` is set
    description: str = field(default="", compare=False)  # free text

    def __post_init__(self):
        if not self.sources:
            raise ValueError("sources must be a non-empty list")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        for key, allowed in (
            ("format", FORMATS),
            ("image_mode", ("bytes", "path")),
            ("on_error", ("fail", "skip")),
        ):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")


def load_recipe(path: str | Path) -> Recipe:
    """Parse and validate a recipe with the one config validator (basereward.config.validate): every problem
    names the file and the dotted key (`sources[1].converter`)."""
    raw = load_yaml(path, "recipe")
    for spec in raw.get("sources") or []:
        # an all-digit commit hash reads as a YAML integer; it is still a revision string
        if isinstance(spec, dict) and type(spec.get("revision")) is int:
            spec["revision"] = str(spec["revision"])
    return validate(Recipe, raw, where=str(path))
