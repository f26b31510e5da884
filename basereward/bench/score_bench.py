"""`basereward bench score`: scoring a GRPO group of G responses to one image+prompt, naive vs prefix-shared.

Variants (docs/performance.md §5; `torch.inference_mode`, one group per step, rewards returned as floats):

    S0   G separate sequences in one right-padded batch, the image encoded G times, CausalLM-style: LM logits
         computed over every position, value head on every position, gathered at the last token
    S1   the same padded batch through basereward's scoring path with `layout="padded"` (no LM head, head on the
         scored tokens only)
    S3   one prefix-shared `[P | r1 .. rG]` row through the scoring path (`layout="shared"`, the default): the image
         and prompt encoded once

Ratios are reported only when the variant's rewards match S0's (fp32, max relative difference <= 1e-4).
Ends stdout with one JSON object (`score_speedup_g8`, `score_efficiency`, ...).
"""

from __future__ import annotations

import time
from pathlib import Path

from basereward.bench import common

VARIANTS = {
    "S0": "G padded sequences, image per sequence, LM logits + value head on all positions",
    "S1": "G padded sequences, image per sequence, head on the scored token (layout=padded)",
    "S3": "one prefix-shared [P|r1..rG] row, image once (layout=shared, default)",
}
FULL = {**common.FULL, "group": 8}
QUICK = {**common.QUICK, "group": 8}


# ---- the variants (run inside the worker process)


def group_rewards(variant: str, model, lm_head, group, pad_id: int) -> list[float]:
    import torch

    from basereward.collate import collate_padded
    from basereward.scoring import score_encoded

    if variant == "S0":
        with torch.inference_mode():
            b = collate_padded([group], pad_id)
            h = model.backbone(**b.model_inputs(), use_cache=False).last_hidden_state
            lm_head(h)  # what a CausalLM + value-head RM computes and throws away
            return model.head(h)[b.score_rows, b.score_cols].float().tolist()
    layout = {"S1": "padded", "S3": "shared"}[variant]
    return score_encoded(model, [group], pad_id, max_rows=len(group.responses), layout=layout)[0]


def group_flops(variant: str, group, pad_id: int, dims) -> float:
    from basereward.bench import flops
    from basereward.collate import collate_padded, collate_shared

    shared = variant == "S3"
    b = (collate_shared if shared else collate_padded)([group], pad_id)
    d = flops.describe_batch(b, "shared" if shared else "padded")
    head = b.input_ids.numel() if variant == "S0" else b.num_rewards
    return flops.batch_forward_flops(
        d["rows"], d["grid_thw"], dims, head_positions=head, lm_head=variant == "S0"
    )


def run_variant(variant: str, spec: dict) -> dict:
    import torch

    from basereward.bench.data import Workload, encode
    from basereward.bench.flops import Dims
    from basereward.bench.runtime import current_rss_mb, load_encoder, load_model, peak_rss_mb, save_gate

    w = Workload(**spec["workload"])
    model = load_model(spec["model_dir"], spec.get("seed", 0)).eval()
    encoder = load_encoder(spec["model_dir"], w.max_pixels)
    groups = encode(encoder, spec["images"], w, per_prompt=w.group, n_prompts=w.distinct_batches)
    dims = Dims.from_config(model.backbone.config)
    text = model.backbone.config.text_config
    lm_head = torch.nn.Linear(text.hidden_size, text.vocab_size, bias=False) if variant == "S0" else None
    n_steps = spec["warmup"] + spec["steps"]
    timed = [groups[s % len(groups)] for s in range(spec["warmup"], n_steps)]
    flops_per_step = sum(group_flops(variant, g, encoder.pad_id, dims) for g in timed) / len(timed)
    rss0, times = current_rss_mb(), []
    for step in range(n_steps):
        group = groups[step % len(groups)]
        t0 = time.perf_counter()
        rewards = group_rewards(variant, model, lm_head, group, encoder.pad_id)
        dt = time.perf_counter() - t0
        if step == 0:
            save_gate(spec, variant, torch.tensor(rewards))
        if step >= spec["warmup"]:
            times.append(dt)
    return {
        "variant": variant,
        "times": times,
        "flops_per_step": flops_per_step,
        "items_per_step": w.group,
        "attention": text._attn_implementation,
        "step_rss_mb": peak_rss_mb() - rss0,
    }


# ---- the command (parent process)


def add_args(p) -> None:
    common.add_workload_args(p, VARIANTS)
    p.add_argument("--group", type=int, help="responses per group G (default 8)")


def run(args) -> dict:
    opts = common.resolve(args, FULL, QUICK)
    workload = common.workload(args, opts, group=opts["group"])
    return common.execute(args, opts, "score", workload, n_images=2, report=report)


def report(runs: dict, variants: list[str], spec: dict, opts: dict, wall_s: float) -> dict:
    summ = {v: common.summarize(runs[v]) for v in variants}
    gates_dir = Path(spec["gates_dir"])
    gates = {
        v: common.check_gate(gates_dir / "S0.pt", gates_dir / f"{v}.pt", with_grads=False)
        for v in variants
        if v != "S0" and (gates_dir / f"{v}.pt").is_file() and (gates_dir / "S0.pt").is_file()
    }
    cmp = {
        f"{fast}_vs_{slow}": common.compare(summ, runs, slow, fast)
        for slow, fast in (("S0", "S3"), ("S1", "S3"), ("S0", "S1"))
        if slow in summ and fast in summ
    }
    for key, c in cmp.items():
        c["gate_passed"] = all(v == "S0" or gates.get(v, {}).get("passed", False) for v in key.split("_vs_"))
        if not c["gate_passed"]:
            c["unchecked_measured"], c["measured"], c["efficiency"] = c["measured"], None, None
            c["median_of_repeats"], c["per_repeat"] = None, None
    print_tables(summ, gates, cmp, variants, opts["group"])
    get = lambda key, field: cmp.get(key, {}).get(field)  # noqa: E731
    g = opts["group"]
    return {
        f"score_speedup_g{g}": get("S3_vs_S0", "measured"),
        f"score_speedup_g{g}_ci95": get("S3_vs_S0", "ci95"),
        f"score_predicted_g{g}": get("S3_vs_S0", "predicted"),
        "score_efficiency": get("S3_vs_S0", "efficiency"),
        f"score_speedup_g{g}_vs_s1": get("S3_vs_S1", "measured"),
        "score_efficiency_vs_s1": get("S3_vs_S1", "efficiency"),
        "score_gates_passed": bool(gates) and all(x["passed"] for x in gates.values()),
        "score_gates": gates,
        "score_comparisons": cmp,
        "score_variants": {v: {**summ[v], "description": VARIANTS.get(v, v)} for v in variants},
        "score_config": {**opts, "workload": spec["workload"], "model_size": opts["size"]},
        "machine": {**common.machine_info(opts["threads"]), **common.load_summary(runs)},
        "score_wall_s": wall_s,
    }


def print_tables(summ: dict, gates: dict, cmp: dict, variants: list[str], group: int) -> None:
    s0 = summ.get("S0", {}).get("median_s")
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
                common.fmt(med and group / med, ".1f"),
                common.fmt(s["peak_rss_mb"], ".0f"),
                common.fmt(s0 / med if s0 and med else None, ".2f"),
                common.fmt(s["flops_per_step"] and s["flops_per_step"] / 1e9, ".1f"),
                "ref" if v == "S0" else ("-" if g is None else ("pass" if g["passed"] else "FAIL")),
                "; ".join(e.splitlines()[0][:60] for e in s["errors"]),
            ]
        )
    print(f"\nscoring, G = {group} (ms per group = median over timed steps; responses/s; RSS in MB)")
    print(
        common.table(
            ["var", "ms/group", "IQR ms", "resp/s", "peak RSS", "x S0", "GFLOP", "gate", "errors"], rows
        )
    )
    print(common.ratio_table(cmp))
    for v, g in gates.items():
        print(f"gate {v} vs S0: max_rel_reward={g['max_rel_reward']:.3g} passed={g['passed']}")
