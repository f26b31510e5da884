"""Mixture recipes (`configs/data/*.yaml`): the typed schema and its validation. Values only; the build lives
in basereward/data/mixture.py. Every shipped recipe is loaded by a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from basereward.data.shards import FORMATS
from basereward.data.sources import SOURCES
from basereward.types import DataError


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


def load_recipe(path: str | Path) -> Recipe:
    """Parse and validate a recipe; every problem names the file and the key."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DataError(f"{path}: cannot read recipe: {e}") from e
    if not isinstance(raw, dict):
        raise DataError(f"{path}: a recipe must be a mapping")
    _check_keys(raw, Recipe, str(path))
    specs = raw.get("sources")
    if not isinstance(specs, list) or not specs:
        raise DataError(f"{path}: 'sources' must be a non-empty list")
    sources = []
    for i, s in enumerate(specs):
        where = f"{path}: sources[{i}]"
        if not isinstance(s, dict):
            raise DataError(f"{where} must be a mapping")
        _check_keys(s, SourceSpec, where)
        for key in ("name", "path"):
            if not isinstance(s.get(key), str) or not s[key]:
                raise DataError(f"{where}.{key} is required (a string)")
        if s.get("converter") is not None and s["converter"] not in SOURCES:
            raise DataError(f"{where}.converter {s['converter']!r} is not one of {', '.join(SOURCES)}")
        if s.get("max_pairs") is not None and (not isinstance(s["max_pairs"], int) or s["max_pairs"] < 0):
            raise DataError(f"{where}.max_pairs must be a non-negative integer")
        if s.get("weight") is not None and (not isinstance(s["weight"], int | float) or s["weight"] < 0):
            raise DataError(f"{where}.weight must be a non-negative number")
        sources.append(
            SourceSpec(**{k: (str(v) if k == "revision" and v is not None else v) for k, v in s.items()})
        )
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise DataError(f"{path}: source names must be unique, got {names}")
    recipe = Recipe(**{**raw, "sources": tuple(sources)})
    if (
        recipe.format not in FORMATS
        or recipe.image_mode not in ("bytes", "path")
        or recipe.on_error not in ("fail", "skip")
    ):
        raise DataError(f"{path}: format must be one of {FORMATS}, image_mode bytes|path, on_error fail|skip")
    if not isinstance(recipe.seed, int):
        raise DataError(f"{path}: seed must be an integer")
    return recipe


def _check_keys(raw: dict, cls, where: str) -> None:
    unknown = set(raw) - {f.name for f in fields(cls)}
    if unknown:
        raise DataError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed: {[f.name for f in fields(cls)]}"
        )
