"""`basereward data build`: a YAML recipe -> one shuffled training mixture (a shard folder) + a stats report.

    basereward data build --recipe configs/data/basereward-final.yaml --out data/mixtures/basereward-final

Pipeline, with memory bounded by a chunk or a shuffle bucket, never by the set:
1. stage every source as Arrow shards: raw downloads through their converter, Parquet/JSONL pair data copied;
   Arrow shard folders are used in place (memory-mapped);
2. select rows per source: `max_pairs` (a seeded subsample without replacement) and/or `weight` (a multiplier:
   0.5 keeps half, 2.0 repeats every pair twice), seeded by (seed, source name);
3. one pass over the selected rows computes exact pair keys, whitespace token counts and image presence
   (`dedup: true` keeps the first copy of a duplicate pair, in recipe order);
4. a seeded permutation of all rows, written through a two-pass bucket shuffle (see `_write`).
Same recipe + seed -> same rows in the same order; another seed -> another order.
Token lengths: a whitespace-word proxy over all rows, and, when `tokenizer` names a local tokenizer.json (or a
folder with one), real token counts (no chat template) on the first `token_sample` rows of the shuffled
output, which are a uniform sample.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from basereward.data.convert import convert
from basereward.data.dedup import image_digest, pair_key, prompt_key
from basereward.data.recipe import Recipe, SourceSpec, load_recipe
from basereward.data.shard_reader import ShardDir, is_shard_dir
from basereward.data.shards import MANIFEST, ShardWriter, rebase_paths
from basereward.types import DataError

_CHUNK_BYTES = 64 << 20  # target bytes read from a source at once
_BUCKET_BYTES = 128 << 20  # target size of one shuffle bucket (see _write)
_MAX_BUCKETS = 400  # open bucket files at once; buckets grow past _BUCKET_BYTES for datasets above ~50 GB
# unmap a source after this much was read from it, so the mapped pages a pass touched stop counting in RSS
_RELEASE_BYTES = 128 << 20


def add_args(parser) -> None:
    parser.add_argument("--recipe", required=True, type=Path, help="configs/data/NAME.yaml")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--root", type=Path, help="folder relative source paths start from (overrides the recipe)"
    )
    parser.add_argument("--seed", type=int, help="override the recipe's seed")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    parser.add_argument("--keep-staging", action="store_true", help="keep OUT/.staging (converted sources)")


def run(args) -> dict:
    recipe = load_recipe(args.recipe)
    if args.seed is not None:
        recipe = Recipe(**{**recipe.__dict__, "seed": args.seed})
    return build(recipe, args.out, root=args.root, overwrite=args.overwrite, keep_staging=args.keep_staging)


def build(
    recipe: Recipe,
    out: str | Path,
    *,
    root: str | Path | None = None,
    overwrite: bool = False,
    keep_staging: bool = False,
) -> dict:
    t0 = time.perf_counter()
    out, root = Path(out), Path(root if root is not None else recipe.root)
    tokenizer = _load_tokenizer(recipe.tokenizer, root, recipe.name) if recipe.tokenizer else None
    with ShardWriter(out, fmt=recipe.format, image_mode=recipe.image_mode, overwrite=overwrite) as writer:
        staging = out / ".staging"
        shards, conversions = [], {}
        for spec in recipe.sources:
            sd, report = _stage(spec, root, staging, recipe, out)
            shards.append(sd)
            if report:
                conversions[spec.name] = report
        t_staged = time.perf_counter()
        rng = np.random.default_rng(recipe.seed)
        selected = [_select(spec, sd.num_rows, recipe.seed) for spec, sd in zip(recipe.sources, shards)]
        facts = [_facts(sd, rows) for sd, (rows, _) in zip(shards, selected)]
        keep, n_dupes = _dedup([f["key"] for f in facts], recipe.dedup)
        src = np.concatenate(
            [np.full(int(r[k].sum()), i, np.int32) for i, ((_, r), k) in enumerate(zip(selected, keep))]
        )
        row = np.concatenate([np.repeat(rows[k], r[k]) for (rows, r), k in zip(selected, keep)])
        perm = rng.permutation(len(row))
        src, row = src[perm], row[perm]
        tok = _write(writer, shards, src, row, out, tokenizer, recipe.token_sample)
        report = _report(recipe, shards, selected, facts, keep, n_dupes, tok)
        report["convert"] = conversions
        report["seconds"] = {"staging": round(t_staged - t0, 2), "total": round(time.perf_counter() - t0, 2)}
        report["rows_per_s"] = round(len(row) / max(time.perf_counter() - t_staged, 1e-9), 1)
        writer.close({"build": report})
    for sd in shards:
        sd.release()
    if not keep_staging:
        shutil.rmtree(staging, ignore_errors=True)
    (out / "stats.json").write_text(json.dumps(report, indent=1, default=str))
    print(_summary(report), file=sys.stderr)
    return {"out": str(out), **report}


def _stage(
    spec: SourceSpec, root: Path, staging: Path, recipe: Recipe, out: Path
) -> tuple[ShardDir, dict | None]:
    path = Path(spec.path) if Path(spec.path).is_absolute() else root / spec.path
    if spec.converter is None and is_shard_dir(path):
        sd = ShardDir(path, release_every=_RELEASE_BYTES)
        if sd.fmt == "arrow":  # memory-mapped in place, no copy
            return sd, None
        with ShardWriter(staging / spec.name, fmt="arrow", overwrite=True) as w:
            for batch in sd.iter_batches():
                w.write_batch(rebase_paths(batch, sd.path, w.out_dir))
            w.close()
        sd.release()
        return ShardDir(staging / spec.name, release_every=_RELEASE_BYTES), None
    if (path / MANIFEST).is_file():  # a JSONL-format pair folder
        path = path / "pairs.jsonl"
    if spec.converter is None and not path.is_file():
        raise DataError(
            f"source {spec.name!r}: {path} is neither a pair shard folder nor a pair JSONL (set 'converter')"
        )
    images = (
        None
        if spec.images is None
        else (Path(spec.images) if Path(spec.images).is_absolute() else root / spec.images)
    )
    report = convert(
        spec.converter or "pairs",
        path,
        staging / spec.name,
        images=images,
        fmt="arrow",
        image_mode=recipe.image_mode,
        on_error=recipe.on_error,
        split=spec.split,
        revision=spec.revision,
        overwrite=True,
        images_dir=out / "images",  # survives the staging folder's removal
    )
    return ShardDir(staging / spec.name, release_every=_RELEASE_BYTES), report


def _select(spec: SourceSpec, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct rows, times each is used). The source's own generator makes its choice independent of
    the other sources in the recipe."""
    count = n if spec.weight is None else int(round(spec.weight * n))
    if spec.max_pairs is not None:
        count = min(count, spec.max_pairs)
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])
    if count <= n:
        rows = np.sort(rng.choice(n, size=count, replace=False)) if count < n else np.arange(n)
        return rows.astype(np.int64), np.ones(len(rows), np.int64)
    repeats = np.full(n, count // n, np.int64)
    repeats[rng.choice(n, size=count % n, replace=False)] += 1
    return np.arange(n, dtype=np.int64), repeats


def _facts(sd: ShardDir, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Per selected row: exact pair key, prompt key, whitespace word counts, image count. One streaming
    pass."""
    n = len(rows)
    out = {
        k: np.zeros(n, np.uint64 if "key" in k else np.int64)
        for k in ("key", "prompt_key", "prompt", "chosen", "rejected", "images")
    }
    step = _chunk_rows(sd)
    cols = ["prompt", "images", "chosen", "rejected"]
    for lo in range(0, n, step):
        table = sd.take(rows[lo : lo + step], columns=cols)
        for i, (p, imgs, c, r) in enumerate(zip(*(table.column(k).to_pylist() for k in cols)), start=lo):
            digests = [image_digest(im, sd.path) for im in imgs]
            out["key"][i] = pair_key(p, digests, c, r)
            out["prompt_key"][i] = prompt_key(p, digests)
            out["prompt"][i] = sum(len(m["content"].split()) for m in p)
            out["chosen"][i], out["rejected"][i], out["images"][i] = len(c.split()), len(r.split()), len(imgs)
    return out


def _dedup(keys: list[np.ndarray], drop: bool) -> tuple[list[np.ndarray], int]:
    """Masks of rows to keep per source (first copy in recipe order), and the number of duplicate rows."""
    allkeys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    first = np.zeros(len(allkeys), bool)
    first[np.unique(allkeys, return_index=True)[1]] = True
    n_dupes = int(len(allkeys) - first.sum())
    if not drop:
        first[:] = True
    bounds = np.cumsum([0] + [len(k) for k in keys])
    return [first[a:b] for a, b in zip(bounds[:-1], bounds[1:])], n_dupes


def _chunk_rows(sd: ShardDir) -> int:
    size = sum(f.stat().st_size for f in sd.files)
    per_row = max(size / max(sd.num_rows, 1), 1)
    return int(np.clip(_CHUNK_BYTES / per_row, 256, 16384))


def _write(
    writer: ShardWriter,
    shards: list[ShardDir],
    src: np.ndarray,
    row: np.ndarray,
    out: Path,
    tokenizer=None,
    token_sample: int = 0,
) -> dict | None:
    """Write rows in output order (src[k], row[k] is output row k) with a two-pass bucket shuffle; returns the
    tokenizer lengths of the first rows if asked.

    Gathering rows in random order straight from memory-mapped sources would fault in most of every file (each
    row touches ~10 column buffers, and the kernel maps ~64 KB around each touch), so RSS would grow with the
    dataset. Instead each source is read in row order (sequential, unmapped every _RELEASE_BYTES) and its rows
    are scattered to temporary Arrow bucket files by output position; then each bucket (~_BUCKET_BYTES) is
    loaded, put in order and written. Memory stays bounded by one bucket, whatever the dataset's size."""
    import pyarrow as pa

    n = len(row)
    total_bytes = sum(f.stat().st_size for sd in shards for f in sd.files)
    per_row = max(total_bytes / max(sum(sd.num_rows for sd in shards), 1), 1)
    bucket_rows = max(1024, int(_BUCKET_BYTES / per_row), -(-n // _MAX_BUCKETS))
    folder = out / ".staging" / "buckets"
    folder.mkdir(parents=True, exist_ok=True)
    schema = None
    sinks: dict[int, object] = {}
    try:
        for i, sd in enumerate(shards):
            at = np.flatnonzero(src == i)
            order = np.argsort(row[at], kind="stable")  # read the source front to back
            rows_i, pos_i = row[at][order], at[order]
            step = _chunk_rows(sd)
            for lo in range(0, len(rows_i), step):
                table = sd.take(rows_i[lo : lo + step])
                batches = [rebase_paths(b, sd.path, out) for b in table.to_batches()]
                pos = pos_i[lo : lo + step]
                table = pa.Table.from_batches(batches, schema=table.schema).append_column(
                    "_pos", pa.array(pos)
                )
                schema = schema or table.schema
                bucket = pos // bucket_rows
                by_bucket = np.argsort(bucket, kind="stable")
                for part in np.split(by_bucket, np.flatnonzero(np.diff(bucket[by_bucket])) + 1):
                    k = int(bucket[part[0]])
                    if k not in sinks:
                        sinks[k] = pa.ipc.new_stream(pa.OSFile(str(folder / f"{k:06d}.arrow"), "wb"), schema)
                    sinks[k].write_table(table.take(pa.array(part)))
    finally:
        for s in sinks.values():
            s.close()
    tok: dict[str, list[int]] = {"prompt": [], "chosen": [], "rejected": []}
    for k in sorted(sinks):
        path = folder / f"{k:06d}.arrow"
        table = pa.ipc.open_stream(pa.memory_map(str(path), "r")).read_all()
        table = table.take(pa.array(np.argsort(table.column("_pos").to_numpy()))).drop_columns(["_pos"])
        writer.write_batch(table)
        if tokenizer is not None and len(tok["prompt"]) < token_sample:
            _tokenize(tokenizer, table.slice(0, token_sample - len(tok["prompt"])), tok)
        del table  # unmaps the bucket before the next one is read
        path.unlink()
    return tok if tokenizer is not None else None


def _load_tokenizer(path: str, root: Path, name: str):
    from tokenizers import Tokenizer

    p = Path(path) if Path(path).is_absolute() else root / path
    p = p / "tokenizer.json" if p.is_dir() else p
    if not p.is_file():
        raise DataError(f"recipe {name!r}: tokenizer {p} not found (a tokenizer.json or a folder with one)")
    return Tokenizer.from_file(str(p))


def _tokenize(tokenizer, chunk, tok: dict) -> None:
    prompts = ["\n".join(m["content"] for m in p) for p in chunk.column("prompt").to_pylist()]
    for key, texts in (
        ("prompt", prompts),
        ("chosen", chunk.column("chosen").to_pylist()),
        ("rejected", chunk.column("rejected").to_pylist()),
    ):
        tok[key] += [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


def _quantiles(x: np.ndarray) -> dict:
    if len(x) == 0:
        return {}
    q = np.percentile(x, [5, 50, 90, 99])
    return {
        "p5": float(q[0]),
        "p50": float(q[1]),
        "p90": float(q[2]),
        "p99": float(q[3]),
        "max": int(x.max()),
        "mean": round(float(x.mean()), 1),
    }


def _report(recipe, shards, selected, facts, keep, n_dupes, tok) -> dict:
    per_source, lengths = {}, {k: [] for k in ("prompt", "chosen", "rejected", "pair")}
    total = image_rows = 0
    all_prompt_keys = []
    for spec, sd, (_, reps), f, k in zip(recipe.sources, shards, selected, facts, keep):
        w = reps * k  # rows written per selected row
        n = int(w.sum())
        n_img = int(w[f["images"] > 0].sum())
        per_source[spec.name] = {
            "available": sd.num_rows,
            "selected": int(reps.sum()),
            "duplicates_removed": int(reps[~k].sum()),
            "pairs": n,
            "image_pairs": n_img,
        }
        total, image_rows = total + n, image_rows + n_img
        for key in ("prompt", "chosen", "rejected"):
            lengths[key].append(np.repeat(f[key], w))
        lengths["pair"].append(np.repeat(f["prompt"] + np.maximum(f["chosen"], f["rejected"]), w))
        all_prompt_keys.append(f["prompt_key"][k])
    for s in per_source.values():
        s["share"] = round(s["pairs"] / max(total, 1), 4)
    report = {
        "recipe": recipe.name,
        "seed": recipe.seed,
        "rows": total,
        "sources": per_source,
        "image_share": round(image_rows / max(total, 1), 4),
        "text_share": round(1 - image_rows / max(total, 1), 4) if total else 0.0,
        "token_lengths": {
            "proxy": "whitespace-separated words; prompt = all turns, no chat template or image tokens",
            **{k: _quantiles(np.concatenate(v) if v else np.zeros(0)) for k, v in lengths.items()},
        },
        "duplicates": {
            "exact_pairs": n_dupes,
            "removed": sum(s["duplicates_removed"] for s in per_source.values()),
            "distinct_prompts": int(len(np.unique(np.concatenate(all_prompt_keys))))
            if all_prompt_keys
            else 0,
        },
    }
    if tok is not None:
        report["tokenizer_lengths"] = {
            "tokenizer": recipe.tokenizer,
            "rows": len(tok["prompt"]),
            **{k: _quantiles(np.asarray(v)) for k, v in tok.items()},
        }
    return report


def _summary(report: dict) -> str:
    lines = [f"{report['recipe']}: {report['rows']} pairs, image share {report['image_share']:.1%}"]
    for name, s in report["sources"].items():
        lines.append(
            f"  {name:<28} {s['pairs']:>10} pairs  ({s['share']:.1%}; "
            f"{s['duplicates_removed']} duplicates removed)"
        )
    return "\n".join(lines)
