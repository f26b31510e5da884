"""`basereward data split`: a pair shard folder -> OUT/train and OUT/validation, split by prompt identity.

    basereward data split --input data/mixtures/basereward-final --out data/splits/basereward-final --val-size
    1000

Pairs are grouped by prompt key (normalised prompt text + the content hashes of its images, basereward/data/
dedup.py), and whole groups go to one side, so no prompt+image is on both (MMPR has up to 15 pairs per prompt,
SHP many per post; a row split would leak them). Groups are drawn in a seeded random order until the
validation side holds at least `--val-size` pairs (or `--val-fraction` of them). The image is part of the key
because generic prompts ("Describe this image in detail.") recur over thousands of different images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from basereward.config import call_with_flags
from basereward.data.dedup import image_digest, prompt_key
from basereward.data.shard_reader import ShardDir
from basereward.data.shards import ShardWriter, rebase_paths


def add_args(parser) -> None:
    parser.add_argument("--input", required=True, type=Path, help="a pair shard folder")
    parser.add_argument("--out", required=True, type=Path, help="writes OUT/train and OUT/validation")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--val-size", type=int, help="validation pairs (at least; whole prompt groups)")
    size.add_argument("--val-fraction", type=float, help="validation share of the pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=("parquet", "arrow", "jsonl"), help="default: the input's format")
    parser.add_argument("--overwrite", action="store_true")


def run(args) -> dict:
    return call_with_flags(split, args, inp=args.input, fmt=args.format)


def prompt_keys(sd: ShardDir) -> np.ndarray:
    """The prompt key of every row, in one streaming pass."""
    keys = np.zeros(sd.num_rows, np.uint64)
    i = 0
    for batch in sd.iter_batches(columns=["prompt", "images"]):
        for p, imgs in zip(batch.column("prompt").to_pylist(), batch.column("images").to_pylist()):
            keys[i] = prompt_key(p, [image_digest(im, sd.path) for im in imgs])
            i += 1
    return keys


def validation_mask(keys: np.ndarray, val_rows: int, seed: int) -> np.ndarray:
    """Rows whose group was drawn for validation: groups in a seeded order until `val_rows` rows are
    covered."""
    groups, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(groups))
    taken = np.cumsum(counts[order])
    n_groups = int(np.searchsorted(taken, val_rows) + 1) if val_rows > 0 else 0
    chosen = np.zeros(len(groups), bool)
    chosen[order[: min(n_groups, len(groups))]] = True
    return chosen[inverse]


def split(
    inp: str | Path,
    out: str | Path,
    *,
    val_size: int | None = None,
    val_fraction: float | None = None,
    seed: int = 0,
    fmt: str | None = None,
    overwrite: bool = False,
) -> dict:
    if (val_size is None) == (val_fraction is None):
        raise ValueError("give exactly one of val_size and val_fraction")
    sd = ShardDir(inp)
    out = Path(out)
    keys = prompt_keys(sd)
    want = val_size if val_size is not None else int(round(val_fraction * sd.num_rows))
    is_val = validation_mask(keys, want, seed)
    report = {
        "input": str(inp),
        "seed": seed,
        "rows": sd.num_rows,
        "prompt_groups": int(len(np.unique(keys))),
    }
    writers = {
        side: ShardWriter(out / side, fmt=fmt or sd.fmt, overwrite=overwrite, images_dir=out / "images")
        for side in ("train", "validation")
    }
    try:
        start = 0
        for batch in sd.iter_batches():
            mask = is_val[start : start + batch.num_rows]
            start += batch.num_rows
            for side, m in (("validation", mask), ("train", ~mask)):
                part = batch.filter(pa.array(m))
                if part.num_rows:
                    writers[side].write_batch(rebase_paths(part, sd.path, writers[side].out_dir))
        for side, w in writers.items():
            info = {"split": {**report, "side": side}}
            m = w.close(info)
            report[side] = {
                "rows": m["rows"],
                "groups": int(len(np.unique(keys[is_val if side == "validation" else ~is_val]))),
                "sources": m["sources"],
            }
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    shared = np.intersect1d(keys[is_val], keys[~is_val])
    report["prompts_on_both_sides"] = int(len(shared))  # 0 by construction; reported as the check
    print(
        f"split {inp}: train {report['train']['rows']}, validation {report['validation']['rows']} pairs",
        file=sys.stderr,
    )
    return {"out": str(out), **report}
