"""`basereward bench scale`: training throughput at 1 and N processes on this machine, and the scaling efficiency.

    basereward bench scale [--nproc 2] [--size demo] [--steps 30] [--repeats 2] [--strategies ddp,fsdp]

Every run is a real `basereward train` (the same loop users run) on a tiny checkpoint and synthetic image + text
pairs, in a fresh process: one process, and `torchrun --nproc_per_node N` for each strategy. Throughput is measured
from the trainer's own per-step log between the end of the warm-up steps and the last step (start-up, model load
and the final evaluation are excluded). Runs are interleaved and repeated; each configuration reports its median.

Efficiency = pairs/s at N processes / (N x pairs/s at 1 process with the same threads per process). On a CPU
machine the fair single-process baseline gets the cores of one rank (threads = cores / N); the one-process run
with all cores is reported beside it, since that is the alternative a user on this machine actually has.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from basereward.bench.common import child_env, machine_info, table


def add_args(p) -> None:
    p.add_argument("--nproc", type=int, default=2, help="processes of the multi-process runs (default 2)")
    p.add_argument("--size", default="demo", choices=["test", "demo", "bench"], help="tiny model size")
    p.add_argument("--pairs", type=int, default=512, help="synthetic training pairs")
    p.add_argument("--batch-size", type=int, default=16, help="global batch (pairs per optimizer step)")
    p.add_argument("--micro-batch-size", type=int, default=4, help="pairs per forward")
    p.add_argument("--warmup", type=int, default=5, help="steps excluded from the timing")
    p.add_argument("--steps", type=int, default=30, help="timed steps per run")
    p.add_argument("--repeats", type=int, default=2, help="interleaved repeats of every configuration")
    p.add_argument("--strategies", default="ddp,fsdp", help="comma list of ddp, fsdp")
    p.add_argument("--workdir", help="keep the model, data and runs here (default: a temp dir)")


def prepare(workdir: Path, size: str, pairs: int) -> tuple[Path, Path]:
    from basereward.data.synthetic import synthesize
    from basereward.tiny import init_tiny

    model = workdir / "tiny"
    if not (model / "config.json").is_file():
        init_tiny(model, size=size, seed=0)
    data = workdir / "data"
    if not (data / "train.jsonl").is_file():
        synthesize(data, pairs=pairs, eval_pairs=8, seed=0, text_share=0.25)
    return model, data / "train.jsonl"


def train_once(
    workdir: Path, name: str, nproc: int, threads: int, strategy: str, overrides: list[str]
) -> dict:
    """One `basereward train` run; pairs/s over the timed steps from its metrics.jsonl."""
    out = workdir / "runs" / name
    subprocess.run(["rm", "-rf", str(out)], check=True)
    train = ["-m", "basereward", "train", *overrides, f"output_dir={out}", f"distributed.strategy={strategy}"]
    cmd = (
        [sys.executable, *train]
        if nproc == 1
        else [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            *train,
        ]
    )
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(threads), timeout=3600)
    wall = time.time() - t0
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout)[-1500:], "wall_s": wall}
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train_recs = [r for r in recs if r["split"] == "train"]
    return {
        "elapsed": {r["step"]: r["elapsed_s"] for r in train_recs},
        "wall_s": wall,
        "load_1min": os.getloadavg()[0],
    }


def pairs_per_s(rec: dict, warmup: int, steps: int, batch: int) -> float | None:
    if "error" in rec:
        return None
    e = rec["elapsed"]
    return steps * batch / (e[warmup + steps] - e[warmup])


def run(args) -> dict:
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    cores = os.cpu_count() or 1
    per_rank = max(1, cores // args.nproc)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    model, data = prepare(workdir, args.size, args.pairs)
    total = args.warmup + args.steps
    overrides = [
        f"model.backbone={model}",
        f"data.train={data}",
        "data.validation=null",
        f"batch_size={args.batch_size}",
        f"micro_batch_size={args.micro_batch_size}",
        f"max_steps={total}",
        "log_every=1",
        "save_every=0",
        "eval_every=0",
        "progress=false",
        "tensorboard=false",
        "optim.lr=1e-3",
        "optim.warmup_steps=1",
    ]
    configs = {
        "1 proc x all cores": (1, cores, "ddp"),
        f"1 proc x {per_rank} thread(s)": (1, per_rank, "ddp"),
    }
    configs.update({f"{args.nproc} proc {s}": (args.nproc, per_rank, s) for s in strategies})
    results: dict[str, list[float]] = {k: [] for k in configs}
    errors: dict[str, str] = {}
    for rep in range(args.repeats):
        for name, (nproc, threads, strategy) in configs.items():
            rec = train_once(workdir, name.replace(" ", "_"), nproc, threads, strategy, overrides)
            pps = pairs_per_s(rec, args.warmup, args.steps, args.batch_size)
            if pps is None:
                errors[name] = rec["error"]
            else:
                results[name].append(pps)
            print(
                f"  repeat {rep + 1}/{args.repeats} {name:<22} {pps or float('nan'):8.2f} pairs/s "
                f"(wall {rec['wall_s']:.0f} s)",
                flush=True,
            )
    median = {k: statistics.median(v) if v else None for k, v in results.items()}
    base = median[f"1 proc x {per_rank} thread(s)"]
    efficiency = {k: (v / (configs[k][0] * base) if v and base else None) for k, v in median.items()}
    whole = median["1 proc x all cores"]
    speedup = {k: (v / whole if v and whole else None) for k, v in median.items()}
    rows = [
        [
            k,
            f"{configs[k][0]}",
            f"{configs[k][1]}",
            f"{median[k] or float('nan'):.2f}",
            f"{efficiency[k] or float('nan'):.2f}",
            f"{speedup[k] or float('nan'):.2f}",
        ]
        for k in configs
    ]
    print(
        table(
            ["configuration", "processes", "threads/proc", "pairs/s", "efficiency", "vs 1 proc all cores"],
            rows,
        )
    )
    return {
        "bench": "scale",
        "size": args.size,
        "batch_size": args.batch_size,
        "micro_batch_size": args.micro_batch_size,
        "timed_steps": args.steps,
        "repeats": args.repeats,
        "pairs_per_s": median,
        "samples": results,
        "scaling_efficiency": efficiency,
        "speedup_vs_one_process_all_cores": speedup,
        "errors": errors,
        "machine": machine_info(per_rank),
    }
