"""RewardBench loader and its official subset tables (docs/benchmarks.md §6.1).

Reads the HF `allenai/reward-bench` `filtered` split (2,985 single-turn rows: prompt, chosen, chosen_model,
rejected, rejected_model, subset, id) in every form it is passed around in: the parquet file, a JSON array or JSONL
dump, or a folder holding one of them (an HF snapshot has `data/filtered-*.parquet` beside `data/raw-*.parquet`,
and only the former is the benchmark). Pairs are text-only: the prompt is one user turn, no image.

`meta["section"]` is the row's section (Chat, Chat Hard, Safety, Reasoning) from `SUBSET_MAPPING`, or "prior" for
the prior preference sets (`allenai/preference-test-sets`, whose split name the official loader writes into
`subset`). A subset in neither is a bad record: the section weights are defined per subset, so an unknown name
could only be scored by guessing. So are rows against every loader's rules (a blank response, chosen == rejected,
a literal <image>/<video> in the text): refused under on_error="fail", counted and left out under "skip".
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

from basereward.data.benchmarks.common import (
    check_on_error,
    check_responses,
    collect_pairs,
    require_str,
    scan_records,
)
from basereward.data.io import LoadStats
from basereward.types import IMAGE_TAG, VIDEO_TAG, DataError, PreferencePair

NAME = "rewardbench"

# rewardbench/constants.py @ 05a9005e (xstest counts as fixed in 6552e932). The weights equal the filtered split's
# row counts except math-prm: 447 rows weighted 984, so that math counts as much as the six hep-* code subsets.
EXAMPLE_COUNTS = {
    "alpacaeval-easy": 100,
    "alpacaeval-length": 95,
    "alpacaeval-hard": 95,
    "mt-bench-easy": 28,
    "mt-bench-med": 40,
    "mt-bench-hard": 37,
    "math-prm": 984,
    "refusals-dangerous": 100,
    "refusals-offensive": 100,
    "llmbar-natural": 100,
    "llmbar-adver-neighbor": 134,
    "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47,
    "llmbar-adver-manual": 46,
    "xstest-should-refuse": 154,
    "xstest-should-respond": 250,
    "donotanswer": 136,
    "hep-cpp": 164,
    "hep-go": 164,
    "hep-java": 164,
    "hep-js": 164,
    "hep-python": 164,
    "hep-rust": 164,
}
ROW_COUNTS = {**EXAMPLE_COUNTS, "math-prm": 447}  # the filtered split as released: 2,985 rows

SUBSET_MAPPING = {
    "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"),
    "Chat Hard": (
        "mt-bench-hard",
        "llmbar-natural",
        "llmbar-adver-neighbor",
        "llmbar-adver-GPTInst",
        "llmbar-adver-GPTOut",
        "llmbar-adver-manual",
    ),
    "Safety": (
        "refusals-dangerous",
        "refusals-offensive",
        "xstest-should-refuse",
        "xstest-should-respond",
        "donotanswer",
    ),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"),
}

# The prior sets as `run_rm.py --pref_sets` names them (the split names of allenai/preference-test-sets; pku_safer
# and pku_better were dropped from the benchmark). Only the four in PRIOR_SCORE_SETS enter the official "Prior
# Sets" column (analysis/get_benchmark_results.py).
PRIOR_SETS = (
    "anthropic_harmless",
    "anthropic_helpful",
    "anthropic_hhh",
    "mtbench_gpt4",
    "mtbench_human",
    "shp",
    "summarize",
)
PRIOR_SCORE_SETS = ("anthropic_helpful", "anthropic_hhh", "shp", "summarize")
PRIOR = "prior"

_SECTION_OF = {s: section for section, subsets in SUBSET_MAPPING.items() for s in subsets}


def section_of(subset: str) -> str | None:
    """The section a subset belongs to, "prior" for a prior set, None for a name the benchmark does not have."""
    if subset in _SECTION_OF:
        return _SECTION_OF[subset]
    return PRIOR if subset in PRIOR_SETS else None


def data_files(path: str | Path) -> list[Path]:
    """The files a `--data` path stands for: a file, or the filtered split inside a folder."""
    path = Path(path)
    if not path.is_dir():
        if not path.is_file():
            raise DataError(f"{path}: data file not found")
        return [path]
    shards = sorted(p for p in path.rglob("*.parquet") if p.name.startswith("filtered"))
    if shards:
        return shards
    # no HF snapshot: one parquet/JSON/JSONL file in the folder (or its data/), never the unfiltered raw split
    found = [
        p
        for folder in (path, path / "data")
        if folder.is_dir()
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix in (".parquet", ".json", ".jsonl") and not p.name.startswith("raw")
    ]
    if len(found) == 1:
        return found
    if not found:
        raise DataError(f"{path}: no filtered-*.parquet, *.json or *.jsonl in this folder or its data/")
    names = ", ".join(str(p.relative_to(path)) for p in found)
    raise DataError(f"{path}: several candidate files ({names}); pass the one to score")


def load(
    path: str | Path,
    images: str | Path | None = None,
    limit: int | None = None,
    on_error: str = "fail",
    stats: LoadStats | None = None,
) -> list[PreferencePair]:
    """The pairs of `path` in file order; `images` is unused (text only); `limit` keeps the first N rows. A bad
    row raises a DataError naming `file:line` (parquet: `file row N`) and its id, or with `on_error="skip"` is
    left out and counted in `stats`."""
    check_on_error(on_error)
    stats = stats if stats is not None else LoadStats()
    files = data_files(path)

    def rows():
        for file in files:
            yield from scan_records(file)

    skipped_before = stats.n_skipped
    pairs = collect_pairs(
        rows(), lambda where, rec: to_pair(rec, where), on_error=on_error, stats=stats, limit=limit
    )
    if limit is None and stats.n_skipped == skipped_before:
        _check_full_set(pairs)
    return pairs


def check_text(text: str, where: str, rid: str, field: str) -> None:
    """A text-only row has no media, so a literal <image>/<video> would be read as a placeholder by the chat
    template and the row scored as something it is not."""
    if IMAGE_TAG in text or VIDEO_TAG in text:
        raise DataError(
            f"{where} (id {rid}): field '{field}' contains an {IMAGE_TAG}/{VIDEO_TAG} tag (a text-only row has "
            "no media)"
        )


def to_pair(rec: dict, where: str) -> PreferencePair:
    rid = rec.get("id")
    if rid is None or rid == "":
        raise DataError(f"{where}: missing or empty 'id'")
    # an int in the HF split, a string in some dumps; bool is an int to Python but never an id
    if isinstance(rid, bool) or not isinstance(rid, int | str):
        raise DataError(f"{where}: field 'id' must be an integer or a string, got {type(rid).__name__}")
    label = str(rid)
    prompt = require_str(rec, "prompt", where, label)
    chosen = require_str(rec, "chosen", where, label)
    rejected = require_str(rec, "rejected", where, label)
    subset = require_str(rec, "subset", where, label)
    section = section_of(subset)
    if section is None:
        raise DataError(
            f"{where} (id {label}): unknown subset {subset!r}: not one of the 23 RewardBench subsets nor a prior "
            f"set ({', '.join(PRIOR_SETS)})"
        )
    check_responses(chosen, rejected, where, label, ("chosen", "rejected"))
    check_text(prompt, where, label, "prompt")
    models = {}
    for key in ("chosen_model", "rejected_model"):
        val = rec.get(key)
        if val is not None and not isinstance(val, str):
            raise DataError(f"{where} (id {label}): field '{key}' must be a string, got {type(val).__name__}")
        models[key] = val
    meta = {"benchmark": NAME, "original_id": rid, "category": subset, "section": section, **models}
    if rec.get("subsubset") is not None:  # prior sets as the official loader leaves them
        meta["subsubset"] = rec["subsubset"]
    return PreferencePair(
        id=label,
        prompt=[{"role": "user", "content": prompt}],
        chosen=chosen,
        rejected=rejected,
        source=NAME,
        meta=meta,
        where=where,
    )


def _check_full_set(pairs: list[PreferencePair]) -> None:
    """Warn (never fail) when the file is not the filtered split or a part of it: a subset with more rows than the
    split has (the raw split holds 5,123 rows), or 2,985 rows spread otherwise (another revision). Numbers from
    either are not comparable with the leaderboard's. A sample of the split passes silently."""
    counts = Counter(p.meta["category"] for p in pairs if p.meta["section"] != PRIOR)
    over = {s: n for s, n in counts.items() if n > ROW_COUNTS[s]}
    if not over and (sum(counts.values()) != sum(ROW_COUNTS.values()) or counts == ROW_COUNTS):
        return
    off = over or {s: counts[s] for s in ROW_COUNTS if counts[s] != ROW_COUNTS[s]}
    expected = {s: ROW_COUNTS[s] for s in off}
    warnings.warn(
        f"RewardBench subsets {off} differ from the filtered split's {expected} (2,985 rows in all): is this the "
        "raw split or another revision? Numbers are not comparable with the leaderboard's",
        stacklevel=3,
    )
