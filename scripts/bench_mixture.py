"""Benchmark (not a test): build a mixture from >= 1M synthetic pairs and report throughput and memory.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_mixture.py --rows 1000000 --work /tmp/bench_mixture

Writes four synthetic sources (three text-only, one with small embedded PNGs; one stored as Parquet so it goes
through staging, the rest Arrow used in place; 1% planted cross-source duplicates), then runs `data build` on
them **in a fresh subprocess** that samples its own RSS every 0.1 s. Reports rows/s (whole build, and the
mixing stage after staging), peak RSS (VmHWM, includes memory-mapped pages), peak anonymous RSS (the process's
own memory), and the RSS at each quarter of the run, to show it stays flat. Goal: flat, <= 2 GB. Ends stdout
with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_WORDS = np.array(
    "the a of to and in is that it for on with as was be by this are or from at an not but model".split()
)


def _pool(rng, n, lo, hi) -> pa.Array:
    """n random 'sentences' of lo..hi words; rows pick from the pool and get a unique suffix."""
    return pa.array([" ".join(rng.choice(_WORDS, rng.integers(lo, hi))) for _ in range(n)])


def _images(rng, n) -> list[bytes]:
    import io

    from PIL import Image

    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def _pick(ids: np.ndarray, salt: int, n: int) -> pa.Array:
    """A pool index determined by (row id, salt): a source's copy of another's row picks the same texts."""
    return pa.array((ids * 2654435761 + salt * 40503) % n)


def make_source(
    path: Path, name: str, n: int, salt: int, fmt: str, with_images: bool, dup_of: tuple | None
) -> None:
    from basereward.data.shards import IMAGE, MESSAGE, SCHEMA, ShardWriter

    rng = np.random.default_rng(1234)  # the same pools for every source
    prompts, answers = _pool(rng, 5000, 10, 60), _pool(rng, 5000, 20, 150)
    pngs = pa.array(_images(rng, 300), pa.binary()) if with_images else None
    copy_rng = np.random.default_rng(salt)
    step = 20_000
    with ShardWriter(path, fmt=fmt, overwrite=True, batch_rows=step) as w:
        for lo in range(0, n, step):
            k = min(step, n - lo)
            ids = np.arange(lo, lo + k)
            salts = np.full(k, salt)
            tag = np.full(k, name, dtype=object)
            if dup_of is not None:  # 1% of rows are exact copies of the other source's rows with the same id
                copy = copy_rng.random(k) < 0.01
                salts[copy], tag[copy] = dup_of[1], dup_of[0]
            tag = pa.array(tag.astype(str))
            suffix = pc.cast(pa.array(ids), pa.string())
            content = pc.binary_join_element_wise(tag, prompts.take(_pick(ids, salts, 5000)), suffix, " ")
            if with_images:
                content = pc.binary_join_element_wise(pa.array(["<image>"] * k), content, "\n")
            msgs = pa.StructArray.from_arrays([pa.array(["user"] * k), content], fields=list(MESSAGE))
            prompt = pa.ListArray.from_arrays(pa.array(np.arange(k + 1, dtype=np.int32)), msgs)
            if with_images:
                imgs = pa.StructArray.from_arrays(
                    [pngs.take(pa.array(ids % len(pngs))), pa.nulls(k, pa.string())], fields=list(IMAGE)
                )
                images = pa.ListArray.from_arrays(pa.array(np.arange(k + 1, dtype=np.int32)), imgs)
            else:
                images = pa.ListArray.from_arrays(
                    pa.array(np.zeros(k + 1, dtype=np.int32)), pa.array([], IMAGE)
                )
            chosen = pc.binary_join_element_wise(answers.take(_pick(ids, salts + 1, 5000)), suffix, " ")
            rejected = pc.binary_join_element_wise(answers.take(_pick(ids, salts + 2, 5000)), suffix, " ")
            cols = {
                "id": pc.binary_join_element_wise(pa.array([name] * k), suffix, ":"),
                "source": pa.array([name] * k),
                "prompt": prompt,
                "images": images,
                "videos": pa.ListArray.from_arrays(
                    pa.array(np.zeros(k + 1, dtype=np.int32)),
                    pa.array([], SCHEMA.field("videos").type.value_type),
                ),
                "chosen": chosen,
                "rejected": rejected,
                "score_chosen": pa.nulls(k, pa.float64()),
                "score_rejected": pa.nulls(k, pa.float64()),
                "margin": pa.nulls(k, pa.float64()),
                "meta": pa.array(["{}"] * k),
            }
            w.write_batch(pa.RecordBatch.from_arrays([cols[f.name] for f in SCHEMA], schema=SCHEMA))
        w.close()


def _rss() -> tuple[int, int]:
    """(VmRSS, RssAnon) in bytes."""
    vals = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            vals[key] = int(rest.split()[0]) * 1024
    return vals.get("VmRSS", 0), vals.get("RssAnon", 0)


def child(recipe_path: str, out: str, root: str) -> None:
    """The measured process: build the mixture while a thread samples RSS."""
    from basereward.data.mixture import build, load_recipe

    recipe = load_recipe(recipe_path)
    samples: list[tuple[float, int, int]] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.perf_counter(), *_rss()))
            stop.wait(0.1)

    base_rss, base_anon = _rss()
    t = threading.Thread(target=sample, daemon=True)
    t0 = time.perf_counter()
    t.start()
    report = build(recipe, out, root=root, overwrite=True)
    elapsed = time.perf_counter() - t0
    stop.set()
    t.join()
    times = np.array([s[0] - t0 for s in samples])
    rss, anon = np.array([s[1] for s in samples]), np.array([s[2] for s in samples])
    quarters = [float(rss[np.searchsorted(times, q * elapsed) - 1]) for q in (0.25, 0.5, 0.75, 1.0)]
    result = {
        "rows": report["rows"],
        "seconds": round(elapsed, 2),
        "rows_per_s": round(report["rows"] / elapsed, 1),
        "mixing_rows_per_s": report["rows_per_s"],
        "staging_s": report["seconds"]["staging"],
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30, 3),
        "peak_anon_rss_gb": round(float(anon.max()) / 2**30, 3),
        "rss_after_imports_gb": round(base_rss / 2**30, 3),
        "rss_by_quarter_gb": [round(q / 2**30, 3) for q in quarters],
        "duplicates_removed": report["duplicates"]["removed"],
        "image_share": report["image_share"],
    }
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="synthetic rows over all sources")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_mixture"))
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    shares = {
        "text_a": (0.4, "arrow", False, None),
        "text_b": (0.3, "arrow", False, ("text_a", 0)),
        "text_c": (0.2, "parquet", False, None),
        "images": (0.1, "arrow", True, None),
    }
    t0 = time.perf_counter()
    for i, (name, (share, fmt, imgs, dup)) in enumerate(shares.items()):
        make_source(work / "src" / name, name, int(args.rows * share), i, fmt, imgs, dup)
    gen_s = time.perf_counter() - t0
    recipe = work / "recipe.yaml"
    lines = ["name: bench", "seed: 0", "format: arrow", "dedup: true", "sources:"]
    lines += [f"  - {{name: {n}, path: src/{n}}}" for n in shares]
    recipe.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(recipe), str(work / "mix"), str(work)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    size = sum(f.stat().st_size for f in (work / "mix").glob("data-*"))
    result.update(
        generated_rows=args.rows,
        generate_s=round(gen_s, 1),
        output_gb=round(size / 2**30, 3),
        cpus=os.cpu_count(),
    )
    print(proc.stderr.strip().splitlines()[-5:], file=sys.stderr)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
