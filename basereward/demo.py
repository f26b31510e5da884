"""The embedded default, offline: init-tiny -> synth -> train -> evaluate on the held-out test split.

    basereward demo [--out runs/demo] [--steps N]

Held-out accuracy is measured three ways on pairs the model never trained on: image-grounded pairs as they are,
the same pairs with every image replaced by a blank one of the same size (near 0.5 if the model really looks at
the image), and text-only questions whose items never occur in training (`code`: repeat a 3-digit code given in the
prompt; 150 held-out codes, see basereward/data/synthetic.py).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from basereward.config import DataArgs, HeadConfig, ModelArgs, OptimArgs, TrainConfig

TRAIN_PAIRS = 12000
EVAL_PAIRS = 500
STEPS = 3000
KINDS = ("colour", "shape", "count", "position")
TEXT_SHARE = 0.25
TEXT_KIND = "code"


def demo_config(out: Path, steps: int) -> TrainConfig:
    """The demo's training recipe (configs/demo.yaml holds the same values; a test keeps them in sync)."""
    return TrainConfig(
        output_dir=str(out / "train"),
        seed=0,
        model=ModelArgs(backbone=str(out / "tiny"), head=HeadConfig(layers=2, activation="silu")),
        data=DataArgs(
            train=str(out / "data" / "train.jsonl"), validation=str(out / "data" / "validation.jsonl")
        ),
        optim=OptimArgs(lr=1e-3, weight_decay=0.05, warmup_steps=100, schedule="cosine", grad_clip=1.0),
        batch_size=32,
        micro_batch_size=16,  # divides the batch on 1 or 2 processes (basereward train --nproc 2)
        max_steps=steps,
        precision="fp32",
        eval_every=500,
        max_eval_pairs=400,
        log_every=25,
    )


def accuracy_by_kind(scorer, pairs) -> dict[str, float]:
    from basereward.scoring import score_pairs

    by_kind: dict[str, list[bool]] = {}
    for p, (c, r) in zip(pairs, score_pairs(scorer, pairs)):
        by_kind.setdefault(p.meta.get("kind", "?"), []).append(c > r)
    return {k: sum(v) / len(v) for k, v in sorted(by_kind.items())}


def benchmark_reports(model_dir: str, test_pairs, out: Path) -> dict:
    """The held-out image pairs written in each benchmark's official schema, evaluated by `basereward eval` (real
    loaders, official metrics, length baseline beside the model); reports land in out/reports/<benchmark>/."""
    from basereward.eval.harness import evaluate
    from basereward.eval.synthetic_sets import write_all

    headline = {}
    for name, (data, root) in write_all(test_pairs, out / "benchmark-sets").items():
        print(f"--- {name} (synthetic set in the official schema: {data})", flush=True)
        res = evaluate(name, data, model=model_dir, images=root, out=out / "reports" / name, batch_size=16)
        headline[name] = {k: v for k, v in res.items() if k not in ("model", "report", "scorer", "benchmark")}
        headline[name]["report"] = res["report"]
    return headline


def main(
    out: Path, steps: int, seed: int = 0, train_pairs: int = TRAIN_PAIRS, eval_pairs: int = EVAL_PAIRS
) -> dict:
    from basereward.data.io import read_pairs
    from basereward.data.synthetic import blank_copy, synthesize
    from basereward.scoring import load_scorer
    from basereward.tiny import init_tiny
    from basereward.train import main as train_main

    t0 = time.time()
    print(f"[1/4] tiny Qwen2.5-VL -> {out / 'tiny'}", flush=True)
    init_tiny(out / "tiny", arch="qwen2_5_vl", seed=seed, size="demo")
    print(f"[2/4] synthetic pairs -> {out / 'data'}", flush=True)
    synthesize(
        out / "data",
        pairs=train_pairs,
        eval_pairs=eval_pairs,
        seed=seed,
        text_share=TEXT_SHARE,
        kinds=KINDS,
        text_kind=TEXT_KIND,
    )
    print(f"[3/4] training {steps} steps", flush=True)
    cfg = dataclasses.replace(demo_config(out, steps), seed=seed)
    result = train_main(cfg)

    print("[4/4] evaluating on the held-out test split", flush=True)
    scorer = load_scorer(result["model_dir"], device="cpu", dtype="fp32", batch_size=64, progress=False)
    test = read_pairs(out / "data" / "test.jsonl")
    image_pairs = [p for p in test if p.images]
    text_pairs = [p for p in test if not p.images]
    seen = accuracy_by_kind(scorer, image_pairs)
    blind = accuracy_by_kind(scorer, [blank_copy(p) for p in image_pairs])
    text = accuracy_by_kind(scorer, text_pairs)
    n_kind = {k: sum(1 for p in image_pairs if p.meta["kind"] == k) for k in seen}

    def overall(acc: dict) -> float:
        return sum(acc[k] * n_kind[k] for k in acc) / sum(n_kind.values())

    print(f"\n{'kind':<10} {'pairs':>6} {'with image':>11} {'blank image':>12}")
    for k in seen:
        print(f"{k:<10} {n_kind[k]:>6} {seen[k]:>11.3f} {blind[k]:>12.3f}")
    print(f"{'all image':<10} {len(image_pairs):>6} {overall(seen):>11.3f} {overall(blind):>12.3f}")
    print(
        f"{'text-only':<10} {len(text_pairs):>6} {text.get(TEXT_KIND, float('nan')):>11.3f}   (unseen codes)\n"
    )
    benchmarks = benchmark_reports(result["model_dir"], test, out)
    return {
        "heldout_accuracy": overall(seen),
        "image_blind_accuracy": overall(blind),
        "text_only_accuracy": text.get(TEXT_KIND),
        "heldout_by_kind": seen,
        "blind_by_kind": blind,
        "train_pairs": result["train_pairs"],
        "train_steps": result["steps"],
        "train_seconds": result["train_seconds"],
        "validation_accuracy": result["validation"].get("accuracy"),
        "model_dir": result["model_dir"],
        "benchmarks": benchmarks,
        "total_seconds": time.time() - t0,
    }


def add_args(p) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (tiny model, data, training run)")
    p.add_argument("--steps", type=int, default=STEPS, help="optimizer steps (32 pairs each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-pairs", type=int, default=TRAIN_PAIRS, help="synthetic training pairs")
    p.add_argument(
        "--eval-pairs", type=int, default=EVAL_PAIRS, help="synthetic validation and test pairs (each)"
    )


def run(args) -> dict:
    return main(Path(args.out), args.steps, args.seed, args.train_pairs, args.eval_pairs)
