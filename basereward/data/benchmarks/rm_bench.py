"""RM-Bench loader (docs/benchmarks.md §6.2).

Reads `total_dataset.json` (a JSON array of {id, prompt, chosen: 3 strings, rejected: 3 strings, domain}), the same
records as JSONL, the repo's per-domain files `{chat,code,math,safety-refuse,safety-response}_filtered.json`
(no `domain` field: the file name gives it), or a folder holding either (`total_dataset.json` wins, so the per-domain
files beside it are not read twice). Style k is the same in both lists: 0 concise, 1 detailed plain text, 2
detailed markdown.

Each record becomes 9 text-only pairs, chosen style i against rejected style j, in the order (0,0), (0,1) ... (2,2):
the 3x3 matrix the official `scripts/utils.py` fills. `meta["group"]` is the prompt's id, which the matrix counts
prompts by; `meta["domain"]` is the pooled domain the metrics use (safety-refuse and safety-response are one Safety
domain, as the official code groups them by prefix) and `meta["raw_domain"]` the one in the file. Ids are
`<domain>/<id>` as in `total_dataset.json`; the per-domain files' bare ids get the same prefix, so both forms give
the same pairs. `limit` keeps the first N prompts (9N pairs): a cut inside a prompt would leave its matrix cells
unequally filled.
"""

from __future__ import annotations

from pathlib import Path

from basereward.data.benchmarks.common import (
    check_on_error,
    check_responses,
    require_str,
    scan_json_records,
    unique_id,
)
from basereward.data.benchmarks.rewardbench import check_text
from basereward.data.io import LoadStats
from basereward.types import DataError, PreferencePair

NAME = "rm-bench"
RAW_DOMAINS = ("chat", "code", "math", "safety-refuse", "safety-response")
DOMAINS = ("chat", "code", "math", "safety")
STYLES = ("concise", "detailed", "detailed_markdown")
TOTAL_FILES = ("total_dataset.json", "total_dataset.jsonl")


def pooled(domain: str) -> str:
    """safety-refuse / safety-response -> safety; the others as they are (the official grouping by prefix)."""
    return domain.split("-", 1)[0]


def _file_domain(path: Path) -> str | None:
    stem = path.name.removesuffix(".json").removesuffix(".jsonl")
    return next((d for d in RAW_DOMAINS if stem == f"{d}_filtered"), None)


def data_files(path: str | Path) -> list[Path]:
    """A file as it is; in a folder (or its data/) `total_dataset.json`, else every per-domain file present."""
    path = Path(path)
    if not path.is_dir():
        if not path.is_file():
            raise DataError(f"{path}: data file not found")
        return [path]
    folders = [f for f in (path, path / "data") if f.is_dir()]
    for folder in folders:
        for name in TOTAL_FILES:
            if (folder / name).is_file():
                return [folder / name]
    for folder in folders:
        per_domain = [
            folder / f"{d}_filtered.json" for d in RAW_DOMAINS if (folder / f"{d}_filtered.json").is_file()
        ]
        if per_domain:
            return per_domain
    raise DataError(f"{path}: no total_dataset.json or <domain>_filtered.json in this folder or its data/")


def load(
    path: str | Path,
    images: str | Path | None = None,
    limit: int | None = None,
    on_error: str = "fail",
    stats: LoadStats | None = None,
) -> list[PreferencePair]:
    """9 pairs per record, in file order; `images` is unused (text only); `limit` keeps the first N records. A bad
    record raises a DataError naming `file:line` and its id, or with `on_error="skip"` is left out whole (all 9
    pairs) and counted in `stats`."""
    check_on_error(on_error)
    stats = stats if stats is not None else LoadStats()
    pairs: list[PreferencePair] = []
    seen: dict[str, int] = {}
    prompts = 0
    for file in data_files(path):
        file_domain = _file_domain(file)
        for where, rec in scan_json_records(file):
            if limit is not None and prompts >= limit:
                break
            stats.lines += 1
            try:
                if isinstance(rec, DataError):
                    raise rec
                nine = _to_pairs(rec, where, file_domain, seen)
            except DataError as e:
                if on_error == "fail":
                    raise
                stats.skip(e)
                continue
            stats.kept += 1
            prompts += 1
            pairs += nine
    return pairs


def _styles(rec: dict, key: str, where: str, rid: str) -> list[str]:
    val = rec.get(key)
    if val is None:
        raise DataError(f"{where} (id {rid}): missing field '{key}'")
    if not (isinstance(val, list) and len(val) == 3 and all(isinstance(x, str) for x in val)):
        got = f"a list of {len(val)}" if isinstance(val, list) else type(val).__name__
        raise DataError(
            f"{where} (id {rid}): field '{key}' must be a list of 3 strings (one per style), got {got}"
        )
    return val


def _to_pairs(rec: dict, where: str, file_domain: str | None, seen: dict[str, int]) -> list[PreferencePair]:
    rid = rec.get("id")
    if rid is None or rid == "":
        raise DataError(f"{where}: missing or empty 'id'")
    if isinstance(rid, bool) or not isinstance(rid, int | str):
        raise DataError(f"{where}: field 'id' must be an integer or a string, got {type(rid).__name__}")
    label = str(rid)
    domain = rec.get("domain", file_domain)
    if domain is None:
        raise DataError(
            f"{where} (id {label}): no 'domain' field, and the file is not a <domain>_filtered.json"
        )
    if domain not in RAW_DOMAINS:
        raise DataError(
            f"{where} (id {label}): unknown domain {domain!r}; RM-Bench has {', '.join(RAW_DOMAINS)}"
        )
    if file_domain is not None and domain != file_domain:
        raise DataError(f"{where} (id {label}): domain {domain!r} in a file of domain {file_domain!r}")
    prompt = require_str(rec, "prompt", where, label)
    chosen = _styles(rec, "chosen", where, label)
    rejected = _styles(rec, "rejected", where, label)
    check_text(prompt, where, label, "prompt")
    for i in range(3):
        for j in range(3):
            check_responses(chosen[i], rejected[j], where, label, (f"chosen[{i}]", f"rejected[{j}]"))
    original = label if "/" in label else f"{domain}/{label}"
    group = unique_id(original, seen)  # a repeated id is another prompt, not more cells of the first one
    out = []
    for i in range(3):
        for j in range(3):
            out.append(
                PreferencePair(
                    id=f"{group}#c{i}r{j}",
                    prompt=[{"role": "user", "content": prompt}],
                    chosen=chosen[i],
                    rejected=rejected[j],
                    source=NAME,
                    meta={
                        "benchmark": NAME,
                        "original_id": original,
                        "group": group,
                        "domain": pooled(domain),
                        "raw_domain": domain,
                        "category": pooled(domain),
                        "chosen_style": i,
                        "rejected_style": j,
                    },
                    where=where,
                )
            )
    return out
