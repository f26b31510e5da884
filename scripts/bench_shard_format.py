"""Benchmark (not a test): basereward's pair shard folder against a plain `datasets.save_to_disk` folder.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_shard_format.py --work /tmp/bench_shard_format

Writes the same N synthetic pairs (--pairs; one embedded image each: random bytes of --image-kb KiB,
incompressible like a JPEG; texts of a few hundred characters) three ways: `ShardWriter(fmt="arrow")`,
`ShardWriter(fmt="parquet")` and `datasets.Dataset.from_list(rows, features=SCHEMA).save_to_disk(...)`. Then,
each in a **fresh subprocess** (imports and peak RSS are the task's own), reads them back:

- `random`: K seeded random rows (--take; --parquet-take from the Parquet folder, where every row decodes a whole
  row group), each decoded into a `PreferencePair`;
- `scan`: every row, in order, decoded into a `PreferencePair`.

Readers: ours (`ShardedPairs`, what training and `basereward data ...` use) and `datasets.load_from_disk` +
`ds[i]` / `for row in ds`, rows turned into pairs by the same `row_to_pair`. Our Arrow folder carries
state.json + dataset_info.json, so `datasets` reads it too. Repeats go round all cells in turn; each cell reports
the median wall and CPU time of its import and its task (CPU time is the steadier number on a shared machine),
the largest peak RSS (VmHWM: includes the memory-mapped pages the task touched) and the anonymous RSS at the end
(the process's own memory). A checksum shows every reader read the same rows. Ends stdout with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file from a checkout: import this checkout's basereward
    sys.path.insert(0, str(ROOT))

FOLDERS = ("ours-arrow", "ours-parquet", "datasets")
# (folder, reader) cells: datasets' load_from_disk reads Arrow folders only, so not the Parquet one
CELLS = [
    ("ours-arrow", "ours"),
    ("ours-arrow", "datasets"),
    ("ours-parquet", "ours"),
    ("datasets", "ours"),
    ("datasets", "datasets"),
]


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _pairs(n: int, image_kb: int, seed: int):
    import numpy as np

    from basereward.types import ImageRef, PreferencePair

    rng = np.random.default_rng(seed)
    for i in range(n):
        words = " ".join(f"w{x}" for x in rng.integers(0, 1000, 40))
        yield PreferencePair(
            id=f"p{i}",
            source="bench",
            prompt=[{"role": "user", "content": f"<image>\nQuestion {i}: {words}?"}],
            chosen=f"Answer {i}, right: {words}",
            rejected=f"Answer {i}, wrong: {words[::-1]}",
            images=[ImageRef(data=rng.bytes(image_kb * 1024))],
            meta={"i": i},
        )


def child_write(folder: str, path: Path, n: int, image_kb: int, seed: int) -> dict:
    from basereward.data.shards import ShardWriter

    pairs = list(_pairs(n, image_kb, seed))
    t0 = time.perf_counter()
    if folder == "datasets":
        import datasets

        from basereward.data.shards import SCHEMA, pair_to_row

        rows = [pair_to_row(p, path, "bytes", path / "images", set()) for p in pairs]
        features = datasets.Features.from_arrow_schema(SCHEMA)
        datasets.Dataset.from_list(rows, features=features).save_to_disk(str(path))
    else:
        with ShardWriter(path, fmt=folder.split("-")[1]) as w:
            for p in pairs:
                w.write(p)
            w.close()
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {"write_s": time.perf_counter() - t0, "bytes_on_disk": size}


def _indices(pairs: int, take: int, seed: int) -> list[int]:
    import numpy as np

    return np.random.default_rng(seed + 1).integers(0, pairs, take).tolist()


def child_read(folder: str, reader: str, task: str, path: Path, indices: list[int]) -> dict:
    c0, t0 = time.process_time(), time.perf_counter()
    from basereward.data.shards import row_to_pair

    if reader == "ours":
        from basereward.data.shard_reader import ShardedPairs
    else:
        import datasets
    c1, t1 = time.process_time(), time.perf_counter()
    rss_imported = _status_kb("VmRSS")
    if reader == "ours":
        data = ShardedPairs(path)
        get = data.__getitem__
        rows = iter(data)
    else:
        ds = datasets.load_from_disk(str(path))

        def get(i):
            return row_to_pair(ds[i], path, f"row {i}")

        rows = (row_to_pair(r, path, "row") for r in ds)
    c2, t2 = time.process_time(), time.perf_counter()
    # the checksum makes every reader touch the same bytes, and shows they all read the same rows
    total = 0
    if task == "random":
        for i in indices:
            p = get(i)
            total += len(p.images[0].data) + len(p.chosen) + p.meta["i"]
    else:
        for p in rows:
            total += len(p.images[0].data) + len(p.chosen) + p.meta["i"]
    c3, t3 = time.process_time(), time.perf_counter()
    return {
        "import_s": t1 - t0,
        "import_cpu_s": c1 - c0,
        "open_s": t2 - t1,
        "task_s": t3 - t2,
        "task_cpu_s": c3 - c2,
        "rows": len(indices) if task == "random" else None,
        "checksum": total,
        "rss_after_import_mb": rss_imported / 1024,
        "peak_rss_mb": _status_kb("VmHWM") / 1024,
        "anon_rss_end_mb": _status_kb("RssAnon") / 1024,
    }


def _run_child(spec: dict) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec['mode']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=5000)
    ap.add_argument("--image-kb", type=int, default=32)
    ap.add_argument("--take", type=int, default=5000, help="rows read at random")
    ap.add_argument(
        "--parquet-take",
        type=int,
        default=200,
        help="rows read at random from the Parquet folder (each one decodes a whole row group: slow)",
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_shard_format"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        spec = json.loads(args.child)
        path = Path(spec["path"])
        if spec["mode"] == "write":
            out = child_write(spec["folder"], path, spec["pairs"], spec["image_kb"], spec["seed"])
        else:
            indices = _indices(spec["pairs"], spec["take"], spec["seed"])
            out = child_read(spec["folder"], spec["reader"], spec["task"], path, indices)
        print(json.dumps(out))
        return 0

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    writes = {}
    for folder in FOLDERS:
        spec = {"mode": "write", "folder": folder, "path": str(args.work / folder)}
        writes[folder] = _run_child(
            {**spec, "pairs": args.pairs, "image_kb": args.image_kb, "seed": args.seed}
        )
        print(
            f"write {folder:<13} {writes[folder]['write_s']:7.2f} s  "
            f"{writes[folder]['bytes_on_disk'] / 2**20:8.1f} MiB",
            file=sys.stderr,
        )

    cells = [(task, folder, reader) for task in ("random", "scan") for folder, reader in CELLS]
    runs: dict[tuple, list[dict]] = {c: [] for c in cells}
    # Repeats go round the cells in turn, so a change in the shared machine's load hits every cell alike.
    for rep in range(args.repeats):
        for task, folder, reader in cells:
            take = args.parquet_take if (task, folder) == ("random", "ours-parquet") else args.take
            spec = {"mode": "read", "folder": folder, "reader": reader, "task": task}
            spec.update(path=str(args.work / folder), pairs=args.pairs, take=take, seed=args.seed)
            runs[(task, folder, reader)].append(_run_child(spec))
        print(f"repeat {rep + 1}/{args.repeats} done", file=sys.stderr)

    results = []
    for (task, folder, reader), rs in runs.items():
        if len({r["checksum"] for r in rs}) != 1:
            raise RuntimeError(f"{folder}/{reader}/{task}: checksums differ between repeats")
        cell = {
            "task": task,
            "folder": folder,
            "reader": reader,
            "rows": rs[0]["rows"],
            "checksum": rs[0]["checksum"],
        }
        for key in ("import_s", "import_cpu_s", "open_s", "task_s", "task_cpu_s"):
            cell[key] = round(statistics.median(r[key] for r in rs), 4)
        for key in ("rss_after_import_mb", "peak_rss_mb", "anon_rss_end_mb"):
            cell[key] = round(max(r[key] for r in rs), 1)
        results.append(cell)
        per_row = f"  {1000 * cell['task_cpu_s'] / cell['rows']:6.3f} ms CPU/row" if cell["rows"] else ""
        print(
            f"{task:<6} {folder:<13} read by {reader:<9} import {cell['import_s']:5.2f} s "
            f"({cell['import_cpu_s']:5.2f} CPU)  task {cell['task_s']:6.3f} s ({cell['task_cpu_s']:6.3f} CPU){per_row}  "
            f"peak RSS {cell['peak_rss_mb']:6.1f} MB  anon at end {cell['anon_rss_end_mb']:6.1f} MB",
            file=sys.stderr,
        )
    for task in ("random", "scan"):  # every reader read the same rows (the Parquet random cell reads fewer)
        sums = {
            c["checksum"]
            for c in results
            if c["task"] == task and (task, c["folder"]) != ("random", "ours-parquet")
        }
        if len(sums) != 1:
            raise RuntimeError(f"{task}: readers disagree on the rows they read")
    summary = {
        "pairs": args.pairs,
        "image_kb": args.image_kb,
        "take": args.take,
        "parquet_take": args.parquet_take,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "load_avg_end": os.getloadavg(),
        "writes": writes,
        "reads": results,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
