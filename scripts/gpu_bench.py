"""GPU benchmark of the prefix-shared layout (docs/performance.md §6), one bounded call on one GPU.

    python scripts/gpu_bench.py --budget-s 420            # on the GPU machine, run with a ~480 s limit
    python scripts/gpu_bench.py --dry-run                  # anywhere: config, FLOP predictions, no CUDA

Random-init Qwen2.5-VL-7B architecture (no download), bf16, CUDA-event step times (warm-up, then timed steps).
- preflight: GPU name, torch / transformers versions, flash_attn / torch varlen / flex availability, attention
  backend self-tests, a bf16 8192^3 matmul loop for this run's MAMF.
- training (LLM 6 layers, ViT 8, full width; fwd + bwd + plain SGD): B0 (two padded forwards, image per row, head on
  all positions), T4 (prefix-shared, segment-aware attention), B1 (one padded batch), T5 (T4 + frozen ViT).
- scoring (all 28 / 32 layers, inference): S0 (G padded rows + LM logits), S3 (one shared row), S1 (padded, no LM
  head). Each variant's bf16 rewards are compared with B0's / S0's before timing.
Every variant fails soft (its error is printed, the rest still run), the whole run stops by --budget-s, and the last
lines are a short table and one JSON object holding the device name (also written to $OUT/gpu_bench.json when OUT is
set, and to --json-out). Needs transformers 5.24 (what pyproject pins): install its wheel first where the machine
has another version, e.g. `pip install --no-deps --target /tmp/site transformers-5.24.0-py3-none-any.whl` and
`PYTHONPATH=/tmp/site`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from basereward.bench import gpu_setup  # noqa: E402

TRAIN, SCORE = ("B0", "T4", "B1", "T5"), ("S0", "S3", "S1")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget-s", type=float, default=420.0, help="stop everything after this many seconds")
    p.add_argument(
        "--dry-run", action="store_true", help="print the plan and FLOP predictions; no CUDA needed"
    )
    p.add_argument("--variants", default=",".join(TRAIN + SCORE))
    p.add_argument("--train-layers", type=int, default=6)
    p.add_argument("--train-vit-layers", type=int, default=8)
    p.add_argument("--score-layers", type=int, default=28)
    p.add_argument("--score-vit-layers", type=int, default=32)
    p.add_argument(
        "--pairs", type=int, default=6, help="pairs per training step (B1 = 12 x 1,280 = 15k tokens)"
    )
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--text-tokens", type=int, default=128)
    p.add_argument("--image-grid", default="64x56", help="patch grid h x w (896 x 784 px = 896 image tokens)")
    p.add_argument("--response-len", type=int, default=256)
    p.add_argument(
        "--lognormal", action="store_true", help="lognormal response lengths around --response-len"
    )
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument(
        "--attn",
        default="auto",
        choices=["auto", "flash_attn", "torch_varlen", "flex", "dense"],
        help="segment-aware attention backend for T4/T5/S3 (dense = SDPA with the 4-D mask)",
    )
    p.add_argument("--mamf-seconds", type=float, default=5.0)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak for MFU (H100/H200 SXM)")
    p.add_argument("--json-out", help="also write the final JSON object here")
    p.add_argument(
        "--smoke-cpu",
        action="store_true",
        help="run every code path on the CPU at toy width (a test of this script, not a measurement)",
    )
    args = p.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - set(TRAIN + SCORE)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}")
    args.grid = (1, *map(int, args.image_grid.lower().split("x")))
    if args.smoke_cpu:  # toy shapes; the model width comes from gpu_setup.SMOKE
        args.train_layers, args.train_vit_layers, args.score_layers, args.score_vit_layers = 2, 2, 2, 2
        args.grid, args.text_tokens, args.response_len, args.pairs, args.group = (1, 8, 8), 16, 8, 2, 4
        args.warmup, args.steps, args.mamf_seconds = 1, 2, 0.2
    return args


def workloads(args) -> dict:
    kw = dict(
        text_tokens=args.text_tokens, grid=args.grid, response_len=args.response_len, lognormal=args.lognormal
    )
    return {
        "train": gpu_setup.synthetic_samples(args.pairs, 2, **kw, seed=0),
        "score": gpu_setup.synthetic_samples(1, args.group, **kw, seed=1),
    }


def predictions(args, data) -> dict:
    dims = {
        "train": gpu_setup.dims_for(args.train_layers, args.train_vit_layers, args.smoke_cpu),
        "score": gpu_setup.dims_for(args.score_layers, args.score_vit_layers, args.smoke_cpu),
    }
    out = {v: gpu_setup.variant_flops(v, data["train"], dims["train"]) for v in TRAIN}
    out.update({v: gpu_setup.variant_flops(v, data["score"], dims["score"]) for v in SCORE})
    return out


# ---- the run


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    data = workloads(args)
    pred = predictions(args, data)
    p_len = len(data["train"][0].prompt.input_ids)
    plan = {
        "variants": args.variants,
        "prompt_tokens": p_len,
        "response_len": args.response_len,
        "lognormal": args.lognormal,
        "pairs_per_step": args.pairs,
        "group": args.group,
        "train_depth": [args.train_layers, args.train_vit_layers],
        "score_depth": [args.score_layers, args.score_vit_layers],
        "warmup": args.warmup,
        "steps": args.steps,
        "budget_s": args.budget_s,
    }
    ratios = {
        "T4_vs_B0": pred["B0"] / pred["T4"],
        "T5_vs_B0": pred["B0"] / pred["T5"],
        "T4_vs_B1": pred["B1"] / pred["T4"],
        "S3_vs_S0": pred["S0"] / pred["S3"],
        "S3_vs_S1": pred["S1"] / pred["S3"],
    }
    print(f"plan: {json.dumps(plan)}")
    print("predicted TFLOP/step: " + ", ".join(f"{v} {f / 1e12:.1f}" for v, f in pred.items()))
    print("predicted ratios: " + ", ".join(f"{k} {r:.2f}" for k, r in ratios.items()), flush=True)
    if args.dry_run:
        return emit(
            args,
            {
                "dry_run": True,
                "device": None,
                "plan": plan,
                "predicted_tflop": {v: f / 1e12 for v, f in pred.items()},
                "predicted_ratios": ratios,
            },
        )
    return emit(args, run(args, data, pred, plan, ratios, t0))


def run(args, data, pred, plan, ratios, t0) -> dict:
    from basereward.bench import gpu_run

    if args.smoke_cpu:
        gpu_run.use_cpu_smoke()
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    clock = gpu_run.Clock(args.budget_s, t0)

    def on_alarm(signum, frame):
        raise gpu_run.OutOfBudget("SIGALRM at the budget")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(args.budget_s - (time.time() - t0) - 5)))
    info, results, notes = {"device": None}, {}, []
    try:
        info.update(gpu_run.preflight(args, log))
        for kind in ("train", "score"):
            results[kind] = gpu_run.phase(kind, args, data, pred, info, clock, log)
            if not args.smoke_cpu:
                gpu_run.torch.cuda.empty_cache()  # the phase's model is gone with its frame
    except gpu_run.OutOfBudget as e:
        notes.append(f"stopped early: {e}")
    except Exception as e:  # preflight or model building failed: still print what was measured
        import traceback

        notes.append(f"{type(e).__name__}: {str(e)[:300]}")
        log(traceback.format_exc()[-2000:])
    finally:
        signal.alarm(0)
    return summary(info, results, pred, ratios, plan, notes, time.time() - t0)


def summary(info, results, pred, ratios, plan, notes, elapsed) -> dict:
    flat = {v: r for phase in results.values() for v, r in phase.items()}
    med = lambda v: flat.get(v, {}).get("median_s")  # noqa: E731
    measured = {
        k: (
            med(k.split("_vs_")[1]) / med(k.split("_vs_")[0])
            if med(k.split("_vs_")[0]) and med(k.split("_vs_")[1])
            else None
        )
        for k in ratios
    }
    eff = {k: (measured[k] / ratios[k] if measured[k] else None) for k in ratios}
    mfu = lambda v: flat.get(v, {}).get("mfu")  # noqa: E731
    go = {
        "T4_ge_1.5x_B0": _ge(measured["T4_vs_B0"], 1.5),
        "S3_ge_3x_S0": _ge(measured["S3_vs_S0"], 3.0),
        "T4_mfu_ge_35pct": _ge(mfu("T4"), 0.35),
        "S3_mfu_ge_45pct": _ge(mfu("S3"), 0.45),
    }
    dev = info.get("device")
    print(
        f"\n== GPU bench on {dev}: torch {info.get('torch')}, transformers {info.get('transformers')}, "
        f"flash_attn {info.get('flash_attn')}, attention {info.get('attention')}, "
        f"MAMF {info.get('mamf_tflops', 0):.0f} TFLOP/s, {elapsed:.0f} s =="
    )
    print(
        f"{'var':<4} {'ms/step':>8} {'items/s':>8} {'TFLOP/s':>8} {'MFU':>6} {'peak GB':>8} {'d reward':>9}  note"
    )
    for v in [x for x in ("B0", "B1", "T4", "T5", "S0", "S1", "S3") if x in flat]:
        r = flat[v]
        num = lambda k, f, r=r: format(r[k], f) if r.get(k) is not None else "-"  # noqa: E731
        print(
            f"{v:<4} {num('median_s', '.4f'):>8} {num('items_per_s', '.2f'):>8} {num('tflops', '.0f'):>8} "
            f"{num('mfu', '.2f'):>6} {num('peak_mem_gb', '.1f'):>8} {num('reward_rel_diff', '.1e'):>9}  "
            f"{r.get('error') or r.get('attention') or ''}"
        )
    for k in ratios:
        m = measured[k]
        print(
            f"{k}: measured {'-' if m is None else f'{m:.2f}'}, FLOP-predicted {ratios[k]:.2f}, "
            f"efficiency {'-' if eff[k] is None else f'{eff[k]:.2f}'}  [{dev}]"
        )
    print(f"go/no-go: {go}  notes: {notes}")
    return {
        "device": dev,
        "train_speedup_vs_naive": measured["T4_vs_B0"],
        "train_efficiency": eff["T4_vs_B0"],
        "score_speedup_g8": measured["S3_vs_S0"],
        "score_efficiency": eff["S3_vs_S0"],
        "mfu_train_T4": mfu("T4"),
        "mfu_score_S3": mfu("S3"),
        "measured_ratios": measured,
        "predicted_ratios": ratios,
        "efficiency": eff,
        "go_no_go": go,
        "variants": flat,
        "preflight": info,
        "plan": plan,
        "predicted_tflop": {v: f / 1e12 for v, f in pred.items()},
        "notes": notes,
        "elapsed_s": elapsed,
    }


def _ge(x, bar):
    return None if x is None else bool(x >= bar)


def emit(args, result: dict) -> int:
    line = json.dumps(result, default=str)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_bench.json").write_text(line + "\n")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
