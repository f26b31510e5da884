"""`basereward bench train`: prefix-shared pair training vs naive baselines and TRL's RewardTrainer, on 2 CPU cores.

Variants (docs/performance.md §5; every one = collate + forward + BT loss + backward + clip + AdamW on the
same pre-encoded pairs, 4 per step):

    B0   two separate forwards (all chosen rows, then all rejected rows), image encoded per row, right-padded,
         reward head on every position then gathered, no LM head (TRL's pre-2025-09 RewardTrainer)
    B1   one right-padded batch [chosen; rejected] per pair, image encoded twice, head on every position
    T4   prefix-shared `[P | C | R]` rows (basereward's default training path), image encoded once per pair
    T5   T4 with the vision tower and merger frozen (no vision backward)
    TRL  TRL 1.16 RewardTrainer on the same model and pairs (reward-model wrapper + custom collator, see
         `basereward.bench.trl_peer`), timed between consecutive steps

Ratios are reported only when the variant's first-step rewards, loss and gradients match B0's (fp32 gates).
Ends stdout with one JSON object (`train_speedup_vs_naive`, `train_efficiency`, `train_speedup_vs_trl`, ...).
"""

from __future__ import annotations

import time
from pathlib import Path

from basereward.bench import common
from basereward.bench.data import split_pairs

VARIANTS = {
    "B0": "two forwards (chosen, rejected), padded, image per row, head on all positions",
    "B1": "one padded [chosen; rejected] batch, image per row, head on all positions",
    "T4": "prefix-shared [P|C|R], image once per pair (default path)",
    "T5": "T4 + frozen vision tower and merger",
    "TRL": "TRL 1.16 RewardTrainer, padded 2B batch, wrapper + custom collator",
}
FULL = {**common.FULL, "pairs": 4}
QUICK = {**common.QUICK, "pairs": 2}


# ---- the variants (run inside the worker process)


def all_positions_rewards(model, batch):
    """Reward head on every position, then gather the scored tokens (AutoModelForSequenceClassification style)."""
    out = model.backbone(**batch.model_inputs(), use_cache=False)
    return model.head(out.last_hidden_state)[batch.score_rows, batch.score_cols]


def train_rewards(variant: str, model, pairs, pad_id: int):
    """(chosen rewards, rejected rewards) of one step's pairs, computed the variant's way."""
    from basereward.collate import collate_padded, collate_shared

    if variant == "B0":
        chosen, rejected = split_pairs(pairs)
        return all_positions_rewards(model, collate_padded(chosen, pad_id)), all_positions_rewards(
            model, collate_padded(rejected, pad_id)
        )
    if variant == "B1":
        r = all_positions_rewards(model, collate_padded(pairs, pad_id))
        return r[0::2], r[1::2]
    if variant in ("T4", "T5"):
        r = model(collate_shared(pairs, pad_id))
        return r[0::2], r[1::2]
    raise ValueError(f"unknown training variant {variant!r}")


def step_flops(variant: str, pairs, pad_id: int, dims) -> float:
    """Analytic FLOPs of one training step of `variant` on `pairs` (basereward.bench.flops)."""
    from basereward.bench import flops
    from basereward.collate import collate_padded, collate_shared

    def call(batch, layout, head_all):
        d = flops.describe_batch(batch, layout)
        d["head_positions"] = batch.input_ids.numel() if head_all else batch.num_rewards
        return d

    if variant == "B0":
        chosen, rejected = split_pairs(pairs)
        calls = [
            call(collate_padded(chosen, pad_id), "padded", True),
            call(collate_padded(rejected, pad_id), "padded", True),
        ]
    elif variant in ("B1", "TRL"):
        calls = [call(collate_padded(pairs, pad_id), "padded", True)]
    else:
        calls = [call(collate_shared(pairs, pad_id), "shared", False)]
    return flops.train_flops(calls, dims, vision_trained=variant != "T5")


def setup(spec: dict):
    """(model, encoder, step batches, FLOP dims) for a worker; nothing here is timed."""
    from basereward.bench.data import Workload, encode, step_batches
    from basereward.bench.flops import Dims
    from basereward.bench.runtime import load_encoder, load_model

    w = Workload(**spec["workload"])
    model = load_model(spec["model_dir"], spec.get("seed", 0))
    encoder = load_encoder(spec["model_dir"], w.max_pixels)
    pairs = encode(encoder, spec["images"], w, per_prompt=2, n_prompts=w.pairs_per_step * w.distinct_batches)
    return model, encoder, step_batches(pairs, w.pairs_per_step), Dims.from_config(model.backbone.config)


def run_variant(variant: str, spec: dict) -> dict:
    import torch

    from basereward.bench.runtime import current_rss_mb, peak_rss_mb, save_gate
    from basereward.losses import pair_loss

    model, encoder, batches, dims = setup(spec)
    n_steps = spec["warmup"] + spec["steps"]
    timed = [batches[s % len(batches)] for s in range(spec["warmup"], n_steps)]
    flops_per_step = sum(step_flops(variant, b, encoder.pad_id, dims) for b in timed) / len(timed)
    base = {
        "variant": variant,
        "flops_per_step": flops_per_step,
        "items_per_step": len(batches[0]),
        "attention": model.backbone.config.text_config._attn_implementation,
    }
    if variant == "TRL":
        from basereward.bench.trl_peer import run_trl

        rss0 = current_rss_mb()
        out = run_trl(model, encoder.pad_id, batches, spec)
        return {**base, **out, "step_rss_mb": peak_rss_mb() - rss0}

    model.train()
    if variant == "T5":
        model.backbone.visual.requires_grad_(False)  # tower and merger: no vision backward at all
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
    rss0, times = current_rss_mb(), []
    for step in range(n_steps):
        pairs = batches[step % len(batches)]
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        r_c, r_r = train_rewards(variant, model, pairs, encoder.pad_id)
        loss, _ = pair_loss(r_c, r_r)
        loss.backward()
        if step == 0:  # a warm-up step: the copy is not timed against anything
            grads = {n: p.grad.detach().clone() for n, p in zip(names, params) if p.grad is not None}
            save_gate(spec, variant, torch.cat([r_c, r_r]), loss.item(), grads)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step >= spec["warmup"]:
            times.append(time.perf_counter() - t0)
    return {**base, "times": times, "step_rss_mb": peak_rss_mb() - rss0}


# ---- the command (parent process)


def add_args(p) -> None:
    common.add_workload_args(p, VARIANTS)
    p.add_argument("--pairs", type=int, help="pairs per step (default 4)")


def run(args) -> dict:
    opts = common.resolve(args, FULL, QUICK)
    workload = common.workload(args, opts, pairs_per_step=opts["pairs"])
    return common.execute(args, opts, "train", workload, n_images=2 * opts["pairs"], report=report)


def report(runs: dict, variants: list[str], spec: dict, opts: dict, wall_s: float) -> dict:
    summ = {v: common.summarize(runs[v]) for v in variants}
    gates_dir = Path(spec["gates_dir"])
    gates = {}
    for v in variants:
        if v != "B0" and (gates_dir / f"{v}.pt").is_file() and (gates_dir / "B0.pt").is_file():
            gates[v] = common.check_gate(gates_dir / "B0.pt", gates_dir / f"{v}.pt")
    cmp = {
        f"{fast}_vs_{slow}": common.compare(summ, runs, slow, fast)
        for slow, fast in (
            ("B0", "T4"),
            ("B0", "T5"),
            ("B1", "T4"),
            ("B0", "B1"),
            ("TRL", "T4"),
            ("B0", "TRL"),
        )
        if slow in summ and fast in summ
    }
    for key, c in cmp.items():  # a ratio is reported only if both sides passed their gates against B0
        c["gate_passed"] = all(v == "B0" or gates.get(v, {}).get("passed", False) for v in key.split("_vs_"))
        if not c["gate_passed"]:
            c["unchecked_measured"], c["measured"], c["efficiency"] = c["measured"], None, None
            c["median_of_repeats"], c["per_repeat"] = None, None
    print_tables(summ, gates, cmp, variants)
    get = lambda key, field: cmp.get(key, {}).get(field)  # noqa: E731
    rss = lambda v: summ.get(v, {}).get("peak_rss_mb")  # noqa: E731
    return {
        "train_speedup_vs_naive": get("T4_vs_B0", "measured"),
        "train_speedup_vs_naive_ci95": get("T4_vs_B0", "ci95"),
        "train_predicted_vs_naive": get("T4_vs_B0", "predicted"),
        "train_efficiency": get("T4_vs_B0", "efficiency"),
        "train_speedup_vs_padded": get("T4_vs_B1", "measured"),
        "train_speedup_frozen_vision_vs_naive": get("T5_vs_B0", "measured"),
        "train_efficiency_frozen_vision": get("T5_vs_B0", "efficiency"),
        "train_speedup_vs_trl": get("T4_vs_TRL", "measured"),
        "train_speedup_vs_trl_ci95": get("T4_vs_TRL", "ci95"),
        "train_peak_rss_ratio_t4_b0": rss("T4") / rss("B0") if rss("T4") and rss("B0") else None,
        "train_gates_passed": bool(gates) and all(g["passed"] for g in gates.values()),
        "train_gates": gates,
        "train_comparisons": cmp,
        "train_variants": {v: {**summ[v], "description": VARIANTS.get(v, v)} for v in variants},
        "train_config": {**opts, "workload": spec["workload"], "model_size": opts["size"]},
        "machine": {**common.machine_info(opts["threads"]), **common.load_summary(runs)},
        "train_wall_s": wall_s,
    }


def print_tables(summ: dict, gates: dict, cmp: dict, variants: list[str]) -> None:
    b0 = summ.get("B0", {}).get("median_s")
    rows = []
    for v in variants:
        s = summ[v]
        med = s["median_s"]
        g = gates.get(v)
        rows.append(
            [
                v,
                common.fmt(med and med * 1e3, ".1f"),
                "-" if not s["iqr_s"] else f"{s['iqr_s'][0] * 1e3:.0f}-{s['iqr_s'][1] * 1e3:.0f}",
                common.fmt(med and s["items_per_step"] / med, ".2f"),
                common.fmt(s["peak_rss_mb"], ".0f"),
                common.fmt(s["step_rss_mb"], ".0f"),
                common.fmt(b0 / med if b0 and med else None, ".2f"),
                common.fmt(s["flops_per_step"] and s["flops_per_step"] / 1e9, ".1f"),
                "ref" if v == "B0" else ("-" if g is None else ("pass" if g["passed"] else "FAIL")),
                "; ".join(e.splitlines()[0][:60] for e in s["errors"]),
            ]
        )
    print("\ntraining (s/step = median over timed steps; pairs/s; RSS in MB)")
    print(
        common.table(
            [
                "var",
                "ms/step",
                "IQR ms",
                "pairs/s",
                "peak RSS",
                "step RSS",
                "x B0",
                "GFLOP",
                "gate",
                "errors",
            ],
            rows,
        )
    )
    print(common.ratio_table(cmp))
    for v, g in gates.items():
        print(
            f"gate {v} vs B0: "
            + ", ".join(f"{k}={val:.3g}" if isinstance(val, float) else f"{k}={val}" for k, val in g.items())
        )
