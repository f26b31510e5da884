"""`basereward ensemble`: save several reward models as one ensemble directory (basereward/ensemble.py), which
`basereward score / eval / serve --model DIR` and `load_scorer(DIR)` take like a checkpoint.

    basereward ensemble --models runs/qwen25/final runs/qwen2/final --out runs/ensemble
    basereward ensemble --models A B --strategy val-acc --validation val.jsonl --normalize z --text-model T --out E

`--strategy mean` (default) needs nothing else; `val-acc` and `margin` score `--validation` with each member
through the one scoring path (`score_pairs`), one member loaded at a time so that two 7B models need not fit
together. With `--text-model`, the members are measured on the validation file's multimodal pairs only: those are
the samples they will score. `--normalize z` takes each member's mean/std from its validation rewards when
`--validation` is given, else from its checkpoint's `reward_stats`. `--copy` copies the members (and the text model)
into DIR/members/ (an adapter checkpoint's base model stays where it is). From Python: `build_ensemble(...)`.
"""

from __future__ import annotations

import gc
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from basereward.config import ConfigError, call_with_flags
from basereward.ensemble import (
    ENSEMBLE_FILE,
    NORMALIZE,
    STRATEGIES,
    EnsembleSpec,
    combine,
    is_ensemble_dir,
    strategy_weights,
    write_spec,
)
from basereward.types import DataError

if TYPE_CHECKING:  # scoring imports torch: only when a verb runs
    from basereward.scoring import Scorer


def add_args(p) -> None:
    p.add_argument("--models", nargs="+", required=True, help="member checkpoint directories")
    p.add_argument("--out", required=True, help="the ensemble directory to write (new or empty)")
    p.add_argument(
        "--strategy",
        default="mean",
        choices=STRATEGIES,
        help="mean: plain mean (the paper's best); val-acc / margin: weights proportional to each member's "
        "accuracy / mean margin on --validation",
    )
    p.add_argument(
        "--normalize", default="none", choices=NORMALIZE, help="z: standardise each member's rewards first"
    )
    p.add_argument(
        "--validation", default=None, help="pair JSONL file (or built dataset) the weights come from"
    )
    p.add_argument(
        "--text-model", default=None, help="reward model for text-only samples (routing by modality)"
    )
    p.add_argument(
        "--copy", action="store_true", help="copy the members into DIR/members/ (default: by path)"
    )
    p.add_argument("--batch-size", type=int, default=16, help="sequences per forward (validation scoring)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")


def run(args) -> dict:
    return call_with_flags(build_ensemble, args)


def build_ensemble(
    *,
    models: list[str],
    out: str | Path,
    strategy: str = "mean",
    normalize: str = "none",
    validation: str | Path | None = None,
    text_model: str | None = None,
    copy: bool = False,
    batch_size: int = 16,
    device: str | None = None,
    load_member: Callable[[str], Scorer] | None = None,
) -> dict:
    """Measure (when a validation file is given), weigh, and write the ensemble directory; returns the summary.
    `load_member(path)` loads a member for the validation scoring (default: `load_scorer` with `device` and
    `batch_size`; tests pass stand-ins)."""
    from basereward.model.reward_model import read_metadata
    from basereward.scoring import load_scorer

    if strategy != "mean" and validation is None:
        raise ConfigError(
            f"--strategy {strategy} needs --validation PAIRS.jsonl (its weights are measured there)"
        )
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"--out {out}: exists and is not an empty folder; choose a new one")
    sources = [Path(m) for m in models] + ([Path(text_model)] if text_model else [])
    metas = []
    for src in sources:
        if is_ensemble_dir(src):
            raise DataError(f"{src}: is an ensemble directory; give its members (checkpoints) instead")
        metas.append(read_metadata(src))  # a missing or broken checkpoint fails now, before any scoring

    measured = val_info = None
    if validation is not None:
        pairs, val_info = validation_pairs(Path(validation), multimodal_only=text_model is not None)
        load = load_member or (lambda m: load_scorer(m, device=device, batch_size=batch_size, progress=False))
        chosen_rejected = member_rewards(load, models, pairs)
        measured = [_stats(c, r) for c, r in chosen_rejected]
    stats = None
    if normalize == "z":
        stats = [
            z_stats(m, meta, Path(src) / "basereward.json")
            for m, meta, src in zip(measured or [None] * len(models), metas, models)
        ]
    if measured is not None:
        for m, s in zip(measured, stats or [None] * len(measured)):
            # the margin in the units that are combined: a member with rewards 10x larger is not 10x more sure
            m["margin"] = m["raw_margin"] / s["std"] if s else m["raw_margin"]
    weights = strategy_weights(strategy, measured, len(models))
    if val_info is not None:
        val_info["members"] = measured
        # in-sample for val-acc and margin (the weights were measured on the same pairs): a record, not a test
        ens = _stats(*(combine([side[i] for side in chosen_rejected], weights, stats) for i in (0, 1)))
        ens["margin"] = ens.pop("raw_margin")
        val_info["ensemble"] = ens

    out.mkdir(parents=True, exist_ok=True)
    paths = [str(_place(Path(m), out, f"{i}-{Path(m).resolve().name}", copy)) for i, m in enumerate(models)]
    text = (
        str(_place(Path(text_model), out, f"text-{Path(text_model).resolve().name}", copy))
        if text_model
        else None
    )
    spec = EnsembleSpec(
        members=paths,
        weights=weights,
        strategy=strategy,
        normalize=normalize,
        member_stats=stats,
        text_model=text,
        validation=val_info,
        versions={"basereward": _own_version()},
    )
    write_spec(out, spec)
    return {
        "output": str(out / ENSEMBLE_FILE),
        "members": paths,
        "strategy": strategy,
        "weights": weights,
        "normalize": normalize,
        "text_model": text,
        "validation_accuracy": None if val_info is None else val_info["ensemble"]["accuracy"],
        "member_accuracy": None if measured is None else [m["accuracy"] for m in measured],
    }


def validation_pairs(path: Path, multimodal_only: bool) -> tuple[list, dict]:
    """The pairs the members are measured on, and the record of the file they came from."""
    from basereward.data.store import open_pairs

    pairs = list(open_pairs(path))
    n_all = len(pairs)
    if multimodal_only:  # with a text model the members only ever see multimodal samples: measure them there
        pairs = [p for p in pairs if p.images or p.videos]
    if not pairs:
        what = "multimodal pairs (text-only ones go to --text-model)" if multimodal_only else "pairs"
        raise DataError(f"--validation {path}: no {what} to measure the members on")
    return pairs, {**file_record(path), "pairs": len(pairs), "text_only_pairs_left_out": n_all - len(pairs)}


def member_rewards(load, models, pairs) -> list[tuple[list[float], list[float]]]:
    """(chosen rewards, rejected rewards) of each member on the pairs, through the one scoring path; one member
    loaded at a time."""
    from basereward.scoring import score_pairs

    out = []
    for m in models:
        scorer = load(str(m))
        scored = score_pairs(scorer, pairs)
        out.append(([c for c, _ in scored], [r for _, r in scored]))
        del scorer
        gc.collect()  # free a 7B member before the next one loads
    return out


def _stats(chosen, rejected) -> dict:
    from basereward.scoring import pair_stats

    s = pair_stats(chosen, rejected)
    return {
        "accuracy": s["accuracy"],
        "raw_margin": s["margin"],
        "ties": s["ties"],
        "reward_mean": s["reward_mean"],
        "reward_std": s["reward_std"],
    }


def z_stats(measured: dict | None, meta: dict, meta_path: Path) -> dict:
    """A member's z statistics: its validation rewards' mean/std, else its checkpoint's reward_stats."""
    if measured is not None:
        mean, std, source = measured["reward_mean"], measured["reward_std"], "validation"
    else:
        rs = meta.get("reward_stats") or {}
        if not isinstance(rs.get("mean"), (int, float)) or not isinstance(rs.get("std"), (int, float)):
            raise DataError(
                f"{meta_path}: field reward_stats: no mean/std for --normalize z; give --validation PAIRS.jsonl"
            )
        mean, std, source = float(rs["mean"]), float(rs["std"]), "basereward.json reward_stats"
    if not std > 0:
        raise DataError(
            f"{meta_path}: rewards have std {std} ({source}); --normalize z cannot standardise them"
        )
    return {"mean": mean, "std": std, "source": source}


def file_record(path: Path) -> dict:
    """Absolute path, sha256 and size of the validation data (a folder: over its files, sorted by name)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return {
        "path": str(path.resolve()),
        "sha256": h.hexdigest(),
        "bytes": sum(f.stat().st_size for f in files),
    }


def _place(src: Path, out: Path, name: str, copy: bool) -> Path:
    """Where ensemble.json points for a member: its absolute path, or its copy under out/members/ (relative)."""
    if not copy:
        return src.resolve()
    shutil.copytree(src, out / "members" / name)
    return Path("members") / name


def _own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("basereward")
    except PackageNotFoundError:
        return "unknown"
