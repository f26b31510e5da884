"""`basereward bench paradigms`: the naive, critic and generative reward models, and a mean ensemble of three naive
ones, trained on the same synthetic pairs with the same recipe, then measured on the same held-out pairs.

    basereward bench paradigms [--size demo] [--pairs 8000] [--steps 1500] [--paradigms naive,critic,...]

Every model is a real `basereward train` run in a fresh process (the generative demo's recipe,
configs/generative-demo.yaml: batch 16, lr 1e-3, 50 warm-up steps, cosine, clip 1.0, weight decay 0.05; only the
paradigm's own settings differ) on a tiny checkpoint and `data synth` pairs (`--kinds`, no text-only pairs). The
ensemble is `basereward ensemble --strategy mean` over the naive run (seed 0) and two more naive runs (seeds 1, 2).
A run whose `final/` and result are in `--workdir` already is reused, so a rerun only re-measures.

What each number means (per paradigm; a paradigm whose training or scoring fails gets its error instead):
- accuracy: held-out test pairs with reward(chosen) > reward(rejected), strictly; a tie counts wrong (the `wrong`
  tie policy of basereward/eval/tally.py). `ties` counts them: a generative judge gives many (its two answer
  orders disagree), a scalar head almost never.
- blank_accuracy: the same pairs with every image replaced by a mid-grey one (near 0.5 if the model looks).
- train_seconds: the trainer's own `train_seconds` (model load to final checkpoint); the ensemble's is the sum
  of its three members'.
- score_seconds_per_pair: wall time of scoring all held-out pairs in one `score_pairs` call (batch size 16,
  after one warm-up pair) / pairs.
- forwards_per_pair, generated_tokens_per_pair, judge_calls_per_pair: on the first `--cost-pairs` test pairs,
  each scored alone. A forward is one call of a model's backbone (the transformer without its heads), counted by
  a forward hook: a naive pair is one forward (prompt | chosen | rejected in one row), a generative pair one forward
  holding both answer orders, the ensemble one per member, and every token the critic generates one more (each
  decoding step is one backbone call). Generated tokens come from the scorer's own counts (`judge_stats`,
  `critic_stats`); judge calls from `judge_stats`.

Writes OUT/table.md (printed too), OUT/paradigms.png (accuracy against scoring cost) and OUT/paradigms.json.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from basereward.bench.common import child_env, machine_info

PARADIGMS = ("naive", "critic", "generative", "ensemble")
ENSEMBLE_SEEDS = (0, 1, 2)  # seed 0 is the naive paradigm's own run
MAX_EVAL_PAIRS = 100  # validation pairs each training run evaluates on at its end (calibration statistics)


def add_args(p) -> None:
    p.add_argument("--size", default="demo", choices=["test", "demo"], help="tiny model size (default demo)")
    p.add_argument("--pairs", type=int, default=8000, help="synthetic training pairs")
    p.add_argument("--eval-pairs", type=int, default=200, help="synthetic validation and test pairs (each)")
    p.add_argument(
        "--kinds",
        default="colour,shape,count,position",
        help="synthetic image kinds, comma-separated (no text pairs); colour alone saturates every scalar head",
    )
    p.add_argument("--steps", type=int, default=1500, help="optimizer steps of every training run")
    p.add_argument("--batch-size", type=int, default=16, help="pairs per optimizer step (one micro-batch)")
    p.add_argument(
        "--critique-tokens",
        type=int,
        default=64,
        help="critic.max_critique_tokens (synthetic critiques: 36-46)",
    )
    p.add_argument("--paradigms", default=",".join(PARADIGMS), help=f"comma list of {', '.join(PARADIGMS)}")
    p.add_argument(
        "--cost-pairs", type=int, default=20, help="test pairs scored one at a time for the counts"
    )
    p.add_argument("--device", default="cpu", help="cpu | cuda, for training and scoring (default cpu)")
    p.add_argument("--workdir", help="keep the model, data and runs here (default: a new temp dir)")
    p.add_argument("--out", help="report folder (default WORKDIR/report)")


def basereward(args: list[str], what: str) -> dict:
    """`python -m basereward ARGS` in a fresh process; its last stdout line (the verb's JSON result)."""
    proc = subprocess.run(
        [sys.executable, "-m", "basereward", *args], capture_output=True, text=True, env=child_env()
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{what}: exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-1500:]}")
    return json.loads(lines[-1])


def train(run_dir: Path, paradigm: str, seed: int, tiny: Path, data: Path, args) -> dict:
    """One training run (reused when done); its result dict, saved as run_dir/result.json."""
    done = run_dir / "result.json"
    if (run_dir / "final").is_dir() and done.is_file():
        return json.loads(done.read_text())
    overrides = {
        "output_dir": run_dir,
        "seed": seed,
        "paradigm": paradigm,
        "model.backbone": tiny,
        "data.train": data / "train.jsonl",
        "data.validation": data / "validation.jsonl",
        "batch_size": args.batch_size,
        "micro_batch_size": args.batch_size,
        "max_steps": args.steps,
        "precision": "fp32",
        "optim.lr": 1e-3,
        "optim.weight_decay": 0.05,
        "optim.warmup_steps": 50,
        "optim.schedule": "cosine",
        "optim.grad_clip": 1.0,
        "eval_every": 0,
        "max_eval_pairs": MAX_EVAL_PAIRS,
        "save_every": 0,
        "log_every": 50,
        "device": args.device,
        "progress": "false",
        "tensorboard": "false",
    }
    if paradigm == "critic":
        overrides["critic.max_critique_tokens"] = args.critique_tokens
    print(f"  training {run_dir.name} ({args.steps} steps)", flush=True)
    result = basereward(["train", *(f"{k}={v}" for k, v in overrides.items())], f"train {run_dir.name}")
    done.write_text(json.dumps(result, indent=2) + "\n")
    return result


def ensemble_dir(out: Path, members: list[str]) -> Path:
    if not (out / "ensemble.json").is_file():
        basereward(["ensemble", "--models", *members, "--out", str(out), "--strategy", "mean"], "ensemble")
    return out


def members(scorer) -> list:
    return list(getattr(scorer, "members", None) or [scorer])  # an EnsembleScorer's, or the scorer itself


@contextlib.contextmanager
def count_forwards(scorer):
    """Counts calls of every member's backbone (one hook each): `with count_forwards(s) as n: ...; n[0]`."""
    n = [0]

    def hook(*_):
        n[0] += 1

    hooks = [m.model.backbone.register_forward_hook(hook) for m in members(scorer)]
    try:
        yield n
    finally:
        for h in hooks:
            h.remove()


def counts(scorer) -> dict[str, int]:
    """Generated tokens and judge calls so far, summed over members. `critic_stats` is the critic scorer's (a
    scorer without either method generates nothing)."""
    total = {"generated_tokens": 0, "judge_calls": 0}
    for m in members(scorer):
        for name in ("judge_stats", "critic_stats"):
            stats = getattr(m, name, None)
            if callable(stats):
                got = stats()
                for k in total:
                    total[k] += int(got.get(k) or 0)
    return total


def accuracy(rewards: list[tuple[float, float]]) -> tuple[float, int]:
    from basereward.eval.tally import judge

    credits, ties = judge([c for c, _ in rewards], [r for _, r in rewards], ties="wrong")
    return sum(credits) / len(credits), sum(ties)


def member_accuracy(model_dir: str, pairs: list, args) -> float:
    from basereward.scoring import load_scorer, score_pairs

    scorer = load_scorer(model_dir, device=args.device, dtype="fp32", batch_size=16, progress=False)
    return accuracy(score_pairs(scorer, pairs))[0]


def measure(model_dir: str, pairs: list, args) -> dict:
    from basereward.data.synthetic import blank_copy
    from basereward.scoring import load_scorer, score_pairs

    scorer = load_scorer(model_dir, device=args.device, dtype="fp32", batch_size=16, progress=False)
    score_pairs(scorer, pairs[:1])  # warm-up: first-call allocations and lazy imports stay out of the timing
    t0 = time.perf_counter()
    held = score_pairs(scorer, pairs)
    seconds = time.perf_counter() - t0
    acc, ties = accuracy(held)
    blank_acc, blank_ties = accuracy(score_pairs(scorer, [blank_copy(p) for p in pairs]))
    cost = pairs[: max(1, args.cost_pairs)]
    before = counts(scorer)
    with count_forwards(scorer) as forwards:
        for p in cost:
            score_pairs(scorer, [p])
    after = counts(scorer)
    del scorer
    gc.collect()
    return {
        "accuracy": acc,
        "ties": ties,
        "blank_accuracy": blank_acc,
        "blank_ties": blank_ties,
        "test_pairs": len(pairs),
        "score_seconds_per_pair": seconds / len(pairs),
        "forwards_per_pair": forwards[0] / len(cost),
        "generated_tokens_per_pair": (after["generated_tokens"] - before["generated_tokens"]) / len(cost),
        "judge_calls_per_pair": (after["judge_calls"] - before["judge_calls"]) / len(cost),
        "cost_pairs": len(cost),
        "load_1min": os.getloadavg()[0],
    }


def bench_one(name: str, work: Path, tiny: Path, data: Path, pairs: list, args) -> dict:
    """Train (or reuse) and measure one paradigm; an exception becomes {"error": ...} (the others still run)."""
    runs = work / "runs" / f"{args.size}-{data.name}-b{args.batch_size}-s{args.steps}"
    try:
        if name == "ensemble":
            results = [train(runs / f"naive-seed{s}", "naive", s, tiny, data, args) for s in ENSEMBLE_SEEDS]
            model_dir = str(ensemble_dir(runs / "ensemble", [r["model_dir"] for r in results]))
            train_seconds = sum(r["train_seconds"] for r in results)
            print("  measuring the ensemble's members alone", flush=True)
            alone = [member_accuracy(r["model_dir"], pairs, args) for r in results]
            return {
                "model_dir": model_dir,
                "train_seconds": train_seconds,
                "member_accuracy": alone,  # does the mean beat its best member?
                **measure(model_dir, pairs, args),
            }
        else:
            run_dir = runs / (f"critic-c{args.critique_tokens}" if name == "critic" else f"{name}-seed0")
            result = train(run_dir, name, 0, tiny, data, args)
            model_dir, train_seconds = result["model_dir"], result["train_seconds"]
        print(f"  measuring {name}", flush=True)
        return {"model_dir": model_dir, "train_seconds": train_seconds, **measure(model_dir, pairs, args)}
    except Exception as e:  # noqa: BLE001 - a failing paradigm is a result of the bench, not its end
        print(f"  {name} failed: {e}", file=sys.stderr, flush=True)
        return {"error": f"{type(e).__name__}: {e}"}


COLUMNS = [
    ("held-out acc", "accuracy", ".3f"),
    ("ties", "ties", "d"),
    ("blank-image acc", "blank_accuracy", ".3f"),
    ("train s", "train_seconds", ".1f"),
    ("score s/pair", "score_seconds_per_pair", ".4f"),
    ("forwards/pair", "forwards_per_pair", ".2f"),
    ("generated tokens/pair", "generated_tokens_per_pair", ".1f"),
    ("judge calls/pair", "judge_calls_per_pair", ".1f"),
]


def markdown(results: dict[str, dict]) -> str:
    rows = ["| paradigm | " + " | ".join(h for h, _, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    errors = []
    for name, r in results.items():
        if "error" in r:
            cells = ["failed"] + ["-"] * (len(COLUMNS) - 1)
            errors.append(f"- {name}: {r['error'].splitlines()[-1] if r['error'].strip() else r['error']}")
        else:
            cells = [format(r[k], spec) for _, k, spec in COLUMNS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = [
        f"- ensemble members alone (seeds {', '.join(map(str, ENSEMBLE_SEEDS))}): "
        + ", ".join(format(a, ".3f") for a in r["member_accuracy"])
        for name, r in results.items()
        if "member_accuracy" in r
    ]
    return "\n".join(rows + ([""] + notes + errors if notes or errors else [])) + "\n"


def plot(results: dict[str, dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, (name, r) in enumerate(results.items()):
        if "error" in r:
            continue
        x, colour = r["score_seconds_per_pair"], f"C{i}"
        ax.scatter([x], [r["accuracy"]], color=colour, s=60, zorder=3, label=name)
        ax.scatter([x], [r["blank_accuracy"]], facecolors="none", edgecolors=colour, s=60, zorder=3)
        ax.annotate(name, (x, r["accuracy"]), textcoords="offset points", xytext=(6, 4))
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.scatter([], [], color="grey", label="held-out pairs (filled)")
    ax.scatter([], [], facecolors="none", edgecolors="grey", label="same, blank images (hollow)")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.1)  # room for the labels of points at 1.0
    ax.margins(x=0.15)
    ax.set_xlabel("scoring seconds per pair (log scale)")
    ax.set_ylabel("held-out accuracy (ties wrong)")
    ax.set_title("Reward-model paradigms: accuracy vs scoring cost")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(args) -> dict:
    import torch

    from basereward.data.store import open_pairs
    from basereward.data.synthetic import synthesize
    from basereward.model.backbone import quiet_transformers
    from basereward.tiny import init_tiny
    from basereward.types import DataError

    quiet_transformers()
    wanted = [p.strip() for p in args.paradigms.split(",") if p.strip()]
    unknown = sorted(set(wanted) - set(PARADIGMS))
    if unknown or not wanted:
        raise DataError(f"--paradigms takes a comma list of {', '.join(PARADIGMS)}, got {args.paradigms!r}")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-paradigms-"))
    out = Path(args.out) if args.out else work / "report"
    out.mkdir(parents=True, exist_ok=True)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    tiny = work / f"tiny-{args.size}"
    if not (tiny / "config.json").is_file():
        init_tiny(tiny, size=args.size, seed=0)
    data = work / f"data-{'+'.join(kinds)}-p{args.pairs}-e{args.eval_pairs}"
    if not (data / "test.jsonl").is_file():
        synthesize(data, pairs=args.pairs, eval_pairs=args.eval_pairs, seed=0, text_share=0.0, kinds=kinds)
    pairs = list(open_pairs(data / "test.jsonl"))
    print(f"bench paradigms: {wanted}, {args.size} model, work dir {work}", flush=True)

    results = {name: bench_one(name, work, tiny, data, pairs, args) for name in wanted}
    table_md = markdown(results)
    print("\n" + table_md, flush=True)
    (out / "table.md").write_text(table_md)
    png = plot(results, out / "paradigms.png")
    report = {
        "bench": "paradigms",
        **results,
        "settings": {
            k: getattr(args, k)
            for k in ("size", "pairs", "eval_pairs", "kinds", "steps", "batch_size", "critique_tokens")
        }
        | {"cost_pairs": args.cost_pairs, "device": args.device, "tie_policy": "wrong"},
        "workdir": str(work),
        "table": str(out / "table.md"),
        "plot": str(png),
        "machine": machine_info(torch.get_num_threads()),
    }
    (out / "paradigms.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report
