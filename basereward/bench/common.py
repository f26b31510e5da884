"""Benchmark plumbing shared by `bench train` and `bench score`: fresh-subprocess runs, interleaving, statistics,
machine facts and tables. No torch at import time: the parent process only orchestrates.

Protocol (docs/performance.md §5): every variant runs in a fresh `python -m basereward.bench.worker`
process with `--threads` torch threads (2 by default, docs/performance.md §5); variants are interleaved A B C ... A B C ... so that load
from other users of the machine hits all of them alike; each run does warm-up steps then timed steps; a variant's
time is the median over all its timed steps, with the IQR, and each ratio gets a bootstrap 95 % confidence interval.

On a shared 2-core machine use `--threads 1`: when another process holds a core, 2 OpenMP threads wait for each
other at every parallel region (measured here: 11.9 s vs 2.5 s per B0 step at a load average of 4).
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

THREADS = 2
# Workload presets shared by `bench train` and `bench score` (each adds its own batch shape: pairs or group).
FULL = dict(
    size="bench", image_px=448, text_tokens=32, response_len=72, repeats=3, warmup=2, steps=8, threads=2
)
QUICK = dict(
    size="test", image_px=112, text_tokens=16, response_len=8, repeats=1, warmup=1, steps=2, threads=1
)
RECORD = "BENCH_RECORD "  # prefix of the worker's result lines (libraries print other things to stdout)


def child_env(threads: int = THREADS) -> dict:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def run_worker(spec: dict, timeout_s: float = 1800.0) -> list[dict]:
    """Run `basereward.bench.worker` in a fresh process on `spec`; returns the JSON records it printed (one per
    variant). A crash or timeout becomes one record per requested variant with an "error" key (fail soft)."""
    load_before = os.getloadavg()[0]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "basereward.bench.worker"],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=child_env(spec["threads"]),
        )
        records = [
            json.loads(line[len(RECORD) :]) for line in proc.stdout.splitlines() if line.startswith(RECORD)
        ]
        if proc.returncode != 0 or len(records) < len(spec["variants"]):
            tail = (proc.stderr or proc.stdout)[-2000:]
            done = {r["variant"] for r in records}
            records += [
                {"variant": v, "error": f"worker exit {proc.returncode}: {tail}"}
                for v in spec["variants"]
                if v not in done
            ]
    except subprocess.TimeoutExpired:
        records = [{"variant": v, "error": f"timeout after {timeout_s:.0f} s"} for v in spec["variants"]]
    load_after = os.getloadavg()[0]
    for r in records:
        r["load_1min"] = [load_before, load_after]
    return records


def interleaved(
    base_spec: dict, variants: list[str], repeats: int, same_process: bool, log=print
) -> dict[str, list[dict]]:
    """Run `variants` `repeats` times, interleaved; gates are recorded on the first repeat only.
    `same_process` runs all variants of one repeat in a single worker (a quick smoke test, not a benchmark)."""
    out: dict[str, list[dict]] = {v: [] for v in variants}
    for rep in range(repeats):
        groups = [variants] if same_process else [[v] for v in variants]
        for group in groups:
            spec = {**base_spec, "variants": group, "record_gates": rep == 0}
            t0 = time.time()
            for rec in run_worker(spec):
                out[rec["variant"]].append(rec)
                med = statistics.median(rec["times"]) if rec.get("times") else float("nan")
                msg = rec.get("error", "").splitlines()[:1]
                rss = rec.get("peak_rss_mb")
                log(
                    f"  repeat {rep + 1}/{repeats} {rec['variant']:<4} median {med * 1e3:8.1f} ms/step, peak RSS "
                    f"{'-' if rss is None else f'{rss:.0f} MB'}, load {rec['load_1min'][0]:.2f} ({time.time() - t0:.0f} s)"
                    f"{' ERROR ' + msg[0] if msg else ''}",
                    flush=True,
                )
    return out


# ---- command-line options shared by the bench verbs


def add_workload_args(p, variants: dict) -> None:
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny test model, 1 repeat, all variants in one worker (not a benchmark)",
    )
    p.add_argument("--size", choices=["bench", "test", "demo"], help="tiny model size (default bench)")
    p.add_argument(
        "--image-px", type=int, help="square image side in pixels (default 448 = 256 image tokens)"
    )
    p.add_argument("--text-tokens", type=int, help="non-image prompt tokens (default 32)")
    p.add_argument("--response-len", type=int, help="response tokens incl. the scored token (default 72)")
    p.add_argument(
        "--lengths",
        default="fixed",
        choices=["fixed", "lognormal"],
        help="response lengths: fixed, or lognormal around --response-len (x0.25-x4)",
    )
    p.add_argument("--repeats", type=int, help="interleaved repeats (default 3)")
    p.add_argument("--warmup", type=int, help="warm-up steps per run (default 2)")
    p.add_argument("--steps", type=int, help="timed steps per run (default 8)")
    p.add_argument("--variants", default=",".join(variants), help=f"comma list of {', '.join(variants)}")
    p.add_argument(
        "--same-process", action="store_true", help="all variants of a repeat in one worker (no RSS)"
    )
    p.add_argument("--workdir", help="keep the model, images and gate files here (default: a temp dir)")
    p.add_argument(
        "--threads", type=int, help="torch threads per worker (default 2, docs/performance.md §5; quick: 1)"
    )
    p.add_argument("--seed", type=int, default=0)


def resolve(args, full: dict, quick: dict) -> dict:
    """Options given on the command line win; the rest come from the full or the quick preset."""
    base = quick if args.quick else full
    out = {k: getattr(args, k) if getattr(args, k, None) is not None else v for k, v in base.items()}
    out["same_process"] = bool(args.same_process or args.quick)
    return out


def prepare(args, opts: dict, kind: str, workload: dict, n_images: int) -> tuple[dict, Path, bool]:
    """Model checkpoint, images and the base worker spec, in `--workdir` or a new temp dir (returned `own`)."""
    import shutil
    import tempfile

    from basereward.bench.data import write_images
    from basereward.model.backbone import quiet_transformers
    from basereward.tiny import init_tiny

    quiet_transformers()

    own = args.workdir is None
    work = Path(args.workdir or tempfile.mkdtemp(prefix=f"bench-{kind}-"))
    model_dir = work / f"model-{opts['size']}-{args.seed}"
    if not (model_dir / "config.json").is_file():
        init_tiny(model_dir, size=opts["size"], seed=args.seed)
    images = write_images(work / "images", n_images, opts["image_px"], seed=args.seed)
    shutil.rmtree(work / f"gates-{kind}", ignore_errors=True)  # never compare against an earlier run's files
    spec = {
        "kind": kind,
        "model_dir": str(model_dir),
        "images": images,
        "workload": workload,
        "warmup": opts["warmup"],
        "steps": opts["steps"],
        "threads": opts["threads"],
        "seed": args.seed,
        "gates_dir": str(work / f"gates-{kind}"),
    }
    return spec, work, own


def workload(args, opts: dict, **extra) -> dict:
    """The Workload fields every bench verb takes from its resolved options and flags, plus its own (`extra`)."""
    return dict(
        image_px=opts["image_px"],
        prompt_text_tokens=opts["text_tokens"],
        response_len=opts["response_len"],
        lengths=args.lengths,
        seed=args.seed,
        **extra,
    )


def execute(args, opts: dict, kind: str, workload: dict, n_images: int, report) -> dict:
    """The bench sequence: prepare the work dir, run the variants interleaved, `report(runs, variants, spec, opts,
    wall_s)`, remove a temporary work dir."""
    import shutil

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    spec, work, own = prepare(args, opts, kind, workload, n_images)
    print(f"bench {kind}: {opts}, lengths {args.lengths}, variants {variants}, work dir {work}", flush=True)
    t0 = time.time()
    runs = interleaved(spec, variants, opts["repeats"], opts["same_process"])
    result = report(runs, variants, spec, opts, time.time() - t0)
    if own:
        shutil.rmtree(work, ignore_errors=True)
    return result


# ---- statistics


def pooled_times(records: list[dict]) -> list[float]:
    return [t for r in records if "times" in r for t in r["times"]]


def quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(records: list[dict]) -> dict:
    """Median s/step over every timed step of every repeat, IQR, peak RSS (median over repeats)."""
    times = pooled_times(records)
    ok = [r for r in records if "times" in r]
    rss = [r["peak_rss_mb"] for r in ok if r.get("peak_rss_mb") is not None]
    step_rss = [r["step_rss_mb"] for r in ok if r.get("step_rss_mb") is not None]
    errors = [r["error"] for r in records if "error" in r]
    return {
        "median_s": statistics.median(times) if times else None,
        "iqr_s": [quantile(times, 0.25), quantile(times, 0.75)] if times else None,
        "n_timed": len(times),
        "repeat_medians_s": [statistics.median(r["times"]) for r in ok],
        "peak_rss_mb": statistics.median(rss) if rss else None,
        "step_rss_mb": statistics.median(step_rss) if step_rss else None,
        "flops_per_step": ok[0].get("flops_per_step") if ok else None,
        "items_per_step": ok[0].get("items_per_step") if ok else None,
        "attention": ok[0].get("attention") if ok else None,
        "errors": errors,
    }


def ratio_ci(slow: list[float], fast: list[float], n: int = 2000, seed: int = 0) -> list[float] | None:
    """Bootstrap 95 % interval of median(slow) / median(fast), resampling each side's steps independently."""
    if not slow or not fast:
        return None
    rng = random.Random(seed)
    ratios = sorted(
        statistics.median(rng.choices(slow, k=len(slow))) / statistics.median(rng.choices(fast, k=len(fast)))
        for _ in range(n)
    )
    return [ratios[int(0.025 * n)], ratios[int(0.975 * n) - 1]]


def compare(summ: dict[str, dict], runs: dict[str, list[dict]], slow: str, fast: str) -> dict:
    """Measured speedup of `fast` over `slow`, its CI, the FLOP-predicted ratio and measured/predicted."""
    a, b = summ.get(slow, {}), summ.get(fast, {})
    if not a.get("median_s") or not b.get("median_s"):
        return {"measured": None, "ci95": None, "predicted": None, "efficiency": None}
    measured = a["median_s"] / b["median_s"]
    predicted = (
        a["flops_per_step"] / b["flops_per_step"]
        if a.get("flops_per_step") and b.get("flops_per_step")
        else None
    )
    # paired per repeat (the two runs were minutes apart): robust to load that changes between repeats
    pairs = [(x, y) for x, y in zip(runs[slow], runs[fast]) if x.get("times") and y.get("times")]
    per_repeat = [statistics.median(x["times"]) / statistics.median(y["times"]) for x, y in pairs]
    return {
        "measured": measured,
        "ci95": ratio_ci(pooled_times(runs[slow]), pooled_times(runs[fast])),
        "per_repeat": per_repeat,
        "median_of_repeats": statistics.median(per_repeat) if per_repeat else None,
        "predicted": predicted,
        "efficiency": measured / predicted if predicted else None,
    }


# ---- correctness gates (docs/performance.md §5)

REWARD_REL_TOL, LOSS_TOL, GRAD_COS_MIN, GRAD_REL_TOL = 1e-4, 1e-5, 0.99999, 1e-3


def check_gate(ref_path: Path, path: Path, with_grads: bool = True) -> dict:
    """Compare a variant's first-step rewards / loss / gradients with the reference variant's (both fp32)."""
    import torch

    ref, got = torch.load(ref_path, weights_only=True), torch.load(path, weights_only=True)
    r_ref, r_got = ref["rewards"].double(), got["rewards"].double()
    out = {"max_rel_reward": float(((r_got - r_ref).abs() / r_ref.abs().clamp_min(1e-3)).max())}
    ok = out["max_rel_reward"] <= REWARD_REL_TOL
    if "loss" in ref and "loss" in got:
        out["loss_diff"] = abs(float(got["loss"]) - float(ref["loss"]))
        ok &= out["loss_diff"] <= LOSS_TOL
    if with_grads and ref.get("grads") and got.get("grads"):
        names = sorted(set(ref["grads"]) & set(got["grads"]))
        g_ref = torch.cat([ref["grads"][k].double().flatten() for k in names])
        g_got = torch.cat([got["grads"][k].double().flatten() for k in names])
        out["grad_cos"] = float(torch.nn.functional.cosine_similarity(g_got, g_ref, dim=0))
        out["grad_max_rel"] = float((g_got - g_ref).abs().max() / g_ref.abs().max())
        out["grad_params_compared"] = len(names)
        ok &= out["grad_cos"] >= GRAD_COS_MIN and out["grad_max_rel"] <= GRAD_REL_TOL
    out["passed"] = bool(ok)
    return out


# ---- machine facts and tables


def machine_info(threads: int = THREADS) -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import importlib.metadata as md

    versions = {}
    for pkg in ("torch", "transformers", "trl"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        **versions,
    }


def load_summary(runs: dict[str, list[dict]]) -> dict:
    loads = [x for recs in runs.values() for r in recs for x in r.get("load_1min", [])]
    if not loads:
        return {}
    return {
        "load_1min_min": min(loads),
        "load_1min_median": statistics.median(loads),
        "load_1min_max": max(loads),
    }


def fmt(x, spec: str = ".3f", none: str = "-") -> str:
    return none if x is None else format(x, spec)


def ratio_table(cmp: dict) -> str:
    """Speedup rows: pooled-median ratio with its bootstrap CI, the median of per-repeat ratios, the FLOP-predicted
    ratio, measured / predicted, and whether the gates allow reporting it."""
    rows = [
        [
            k,
            fmt(c["measured"], ".2f"),
            "-" if not c["ci95"] else f"{c['ci95'][0]:.2f}-{c['ci95'][1]:.2f}",
            fmt(c.get("median_of_repeats"), ".2f"),
            fmt(c["predicted"], ".2f"),
            fmt(c["efficiency"], ".2f"),
            "yes" if c["gate_passed"] else "no",
        ]
        for k, c in cmp.items()
    ]
    headers = ["ratio", "measured", "95% CI", "per-repeat median", "FLOP-predicted", "efficiency", "gate ok"]
    return table(headers, rows)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])
