"""`basereward bench`: the quick smoke mode end to end (worker process, all variants, gates, JSON keys), the FLOP
model against the published arithmetic of docs/performance.md §1, the workload's exact shapes, the gate check itself, and the statistics
(interval, medians, ratios) against hand and exact computations. The default run never asserts a timing (this machine
is shared and these shapes are toys); the slow full `bench train` run asserts the speed-up's interval."""

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys

import numpy as np
import pytest
import torch

from basereward.bench import common, flops


def quick_args(**kw):
    from basereward.bench import all_bench

    p = argparse.ArgumentParser()
    all_bench.add_args(p)
    args = p.parse_args(["--quick"])
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def test_quick_bench_all_runs_every_variant_and_passes_the_gates(tmp_path, capsys):
    from basereward.bench import all_bench

    out = all_bench.run(quick_args(workdir=str(tmp_path)))
    json.dumps(out)  # the CLI prints it as the last line
    for key in ("train_speedup_vs_naive", "train_efficiency", "train_speedup_vs_trl", "score_speedup_g8"):
        assert key in out and out[key] is not None and out[key] > 0, key
    assert out["train_gates_passed"] and out["score_gates_passed"]
    assert set(out["train_gates"]) == {"B1", "T4", "T5", "TRL"}
    assert set(out["score_gates"]) == {"S1", "S3"}
    for g in out["train_gates"].values():
        assert g["max_rel_reward"] <= 1e-4 and g["loss_diff"] <= 1e-5 and g["grad_cos"] >= 0.99999
    assert out["train_gates"]["T5"]["grad_params_compared"] < out["train_gates"]["T4"]["grad_params_compared"]
    for v in ("B0", "B1", "T4", "T5", "TRL"):
        assert not out["train_variants"][v]["errors"], out["train_variants"][v]["errors"]
        assert out["train_variants"][v]["n_timed"] == 2
    # the FLOP model: sharing saves work, freezing the vision tower saves more
    pred = out["train_comparisons"]
    assert 1.0 < pred["T4_vs_B0"]["predicted"] < pred["T5_vs_B0"]["predicted"]
    assert out["score_predicted_g8"] > 1.0
    assert "load_1min_max" in out["machine"]
    # every reported speedup is the ratio of the reported median step times, its efficiency that ratio over the
    # ratio of the variants' FLOPs, and its interval holds it (2 timed steps a side: >= 9/16 of the bootstrap
    # ratios lie on each side of the point estimate, so the 2.5-97.5 % interval always does)
    tv, sv = out["train_variants"], out["score_variants"]
    for speedup, variants, slow, fast in (
        ("train_speedup_vs_naive", tv, "B0", "T4"),
        ("train_speedup_vs_trl", tv, "TRL", "T4"),
        ("score_speedup_g8", sv, "S0", "S3"),
    ):
        assert out[speedup] == variants[slow]["median_s"] / variants[fast]["median_s"], speedup
        lo, hi = out[speedup + "_ci95"]
        assert lo <= out[speedup] <= hi, speedup
    flop_ratio = tv["B0"]["flops_per_step"] / tv["T4"]["flops_per_step"]
    assert out["train_predicted_vs_naive"] == pytest.approx(flop_ratio, rel=1e-12)
    assert out["train_efficiency"] == pytest.approx(out["train_speedup_vs_naive"] / flop_ratio, rel=1e-12)
    assert out["score_predicted_g8"] == pytest.approx(
        sv["S0"]["flops_per_step"] / sv["S3"]["flops_per_step"], rel=1e-12
    )
    for name, v in {**tv, **sv}.items():  # one repeat: its median is the pooled median
        assert v["repeat_medians_s"] == [v["median_s"]], name
        assert v["iqr_s"][0] <= v["median_s"] <= v["iqr_s"][1], name
    printed = capsys.readouterr().out
    assert "training (s/step" in printed and "scoring, G = 8" in printed


def test_flop_model_reproduces_the_spec_tables():
    """docs/performance.md §1: 131.8 vs 76.3 TFLOP per training pair (P = 1,024 with 900 image tokens,
    C = R = 256, ViT trained), 112.1 vs 66.4 with the ViT frozen, 175.7 vs 46.2 per G = 8 scoring group."""
    d = flops.qwen2_5_vl_7b()
    assert d.llm_params == pytest.approx(6.53e9, rel=2e-3)
    grid = [(1, 60, 60)]  # 3,600 patches = 900 merged tokens
    assert flops.vision_flops(grid, d) == pytest.approx(4.9e12, rel=0.01)
    p, c = 1024, 256
    naive = [
        {
            "rows": [{"width": p + c, "pairs": flops.causal_pairs(p + c)}],
            "grid_thw": grid,
            "head_positions": 1,
        }
    ] * 2
    shared = [
        {
            "rows": [{"width": p + 2 * c, "pairs": flops.shared_pairs(p, [c, c])}],
            "grid_thw": grid,
            "head_positions": 2,
        }
    ]
    assert flops.train_flops(naive, d) / 1e12 == pytest.approx(131.8, rel=0.005)
    assert flops.train_flops(shared, d) / 1e12 == pytest.approx(76.3, rel=0.005)
    assert flops.train_flops(naive, d, vision_trained=False) / 1e12 == pytest.approx(112.1, rel=0.005)
    assert flops.train_flops(shared, d, vision_trained=False) / 1e12 == pytest.approx(66.4, rel=0.005)
    g = 8
    n = flops.batch_forward_flops(
        [{"width": p + c, "pairs": flops.causal_pairs(p + c)}] * g, grid * g, d, head_positions=g
    )
    s = flops.batch_forward_flops(
        [{"width": p + g * c, "pairs": flops.shared_pairs(p, [c] * g)}], grid, d, head_positions=g
    )
    assert n / 1e12 == pytest.approx(175.7, rel=0.005) and s / 1e12 == pytest.approx(46.2, rel=0.005)


def test_dims_from_a_real_config_and_bench_size(tiny_dirs, tmp_path):
    from basereward.model.backbone import load_backbone
    from basereward.tiny import init_tiny

    d = flops.Dims.from_config(load_backbone(init_tiny(tmp_path / "b", size="bench")).config)
    assert (d.hidden, d.layers, d.heads, d.kv_heads, d.head_dim, d.ffn, d.vocab) == (
        256,
        4,
        4,
        2,
        64,
        1344,
        1664,
    )
    assert (d.v_hidden, d.v_depth, d.v_ffn, d.v_out, d.v_window_merged, d.v_fullatt) == (
        96,
        2,
        256,
        256,
        4,
        (1,),
    )
    # the LM head is ~8.7 % of the backbone, as in 7B (the reason for vocab 1,664)
    assert 2 * d.hidden * d.vocab / (2 * d.llm_params) == pytest.approx(0.087, abs=0.003)


def test_workload_shapes(tiny_dirs, tmp_path):
    from basereward.bench.data import Workload, encode, write_images
    from basereward.model.processor import load_processor
    from basereward.template import Encoder

    w = Workload(image_px=112, prompt_text_tokens=40, response_len=12, lengths="lognormal", group=8)
    enc = Encoder(
        load_processor(tiny_dirs["qwen2_5_vl"], "qwen2_5_vl", max_pixels=w.max_pixels), "qwen2_5_vl"
    )
    images = write_images(tmp_path, 2, 112)
    samples = encode(enc, images, w, per_prompt=8, n_prompts=2)
    again = encode(enc, images, w, per_prompt=8, n_prompts=2)
    for s, t in zip(samples, again):  # deterministic
        assert s.prompt.input_ids == t.prompt.input_ids and s.responses == t.responses
    p = samples[0].prompt
    assert sum(x == 0 for x in p.mm_token_type_ids) >= 40 and sum(x == 1 for x in p.mm_token_type_ids) == 16
    lens = [len(r) for s in samples for r in s.responses]
    assert min(lens) >= 3 and max(lens) <= 48 and len(set(lens)) > 3
    assert all(r[-1] == enc.end_id for s in samples for r in s.responses)
    fixed = encode(enc, images, Workload(image_px=112, response_len=12), per_prompt=2, n_prompts=1)
    assert [len(r) for r in fixed[0].responses] == [12, 12]


def test_gate_check_fails_on_a_wrong_variant(tmp_path):
    grads = {"w": torch.ones(10)}
    torch.save({"rewards": torch.tensor([1.0, -2.0]), "loss": 0.5, "grads": grads}, tmp_path / "ref.pt")
    torch.save({"rewards": torch.tensor([1.0, -2.0]), "loss": 0.5, "grads": grads}, tmp_path / "same.pt")
    torch.save({"rewards": torch.tensor([1.0, -2.1]), "loss": 0.5, "grads": grads}, tmp_path / "off.pt")
    torch.save(
        {"rewards": torch.tensor([1.0, -2.0]), "loss": 0.5, "grads": {"w": -torch.ones(10)}},
        tmp_path / "g.pt",
    )
    assert common.check_gate(tmp_path / "ref.pt", tmp_path / "same.pt")["passed"]
    assert not common.check_gate(tmp_path / "ref.pt", tmp_path / "off.pt")["passed"]
    assert not common.check_gate(tmp_path / "ref.pt", tmp_path / "g.pt")["passed"]


def exact_median_distribution(xs: list[float]) -> dict[float, float]:
    """P(median of len(xs) draws with replacement = each value), len(xs) odd and values distinct: the median is
    at most the k-th smallest value iff at least (n + 1) / 2 draws are, a binomial tail with p = k / n."""
    s, n = sorted(xs), len(xs)

    def tail(p: float) -> float:
        return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range((n + 1) // 2, n + 1))

    return {s[k - 1]: tail(k / n) - tail((k - 1) / n) for k in range(1, n + 1)}


def test_exact_median_distribution_by_enumeration():
    xs = [3.0, 1.0, 4.0, 1.5, 9.0]
    counts: dict[float, int] = {}
    for draw in itertools.product(xs, repeat=5):
        counts[statistics.median(draw)] = counts.get(statistics.median(draw), 0) + 1
    exact = exact_median_distribution(xs)
    assert exact == pytest.approx({x: c / 5**5 for x, c in counts.items()}, abs=1e-12)


def test_ratio_ci_matches_the_exact_bootstrap_distribution():
    """The bootstrap interval of median(slow) / median(fast) against the exact distribution of that ratio under
    resampling: its ends are values the ratio can take, at the 2.5 % and 97.5 % points of the exact CDF (within
    what 2,000 draws allow; a 1 % or 5 % interval falls outside)."""
    slow = [1.781, 2.208, 2.158, 1.853, 1.997, 1.97, 2.091, 2.173, 1.756, 1.717, 2.201]
    fast = [0.98, 1.079, 0.851, 0.984, 1.066, 0.919, 1.134, 1.12, 0.859, 0.858, 1.012]
    lo, hi = common.ratio_ci(slow, fast)
    ratios: dict[float, float] = {}
    for a, pa in exact_median_distribution(slow).items():
        for b, pb in exact_median_distribution(fast).items():
            ratios[a / b] = ratios.get(a / b, 0.0) + pa * pb
    assert sum(ratios.values()) == pytest.approx(1.0)

    def below(x):
        return sum(p for r, p in ratios.items() if r < x - 1e-12)

    def at_most(x):
        return sum(p for r, p in ratios.items() if r <= x + 1e-12)

    for end in (lo, hi):
        assert min(abs(end - r) for r in ratios) < 1e-12  # a ratio of two resample medians
    slack = 0.01  # ~3 standard errors of a 2.5 % quantile estimated from 2,000 draws
    assert below(lo) <= 0.025 + slack and at_most(lo) >= 0.025 - slack
    assert below(hi) <= 0.975 + slack and at_most(hi) >= 0.975 - slack
    assert lo < statistics.median(slow) / statistics.median(fast) < hi
    # no spread, no interval; no samples, no ratio
    assert common.ratio_ci([3.0] * 4, [1.5] * 6) == [2.0, 2.0]
    assert common.ratio_ci([], fast) is None and common.ratio_ci(slow, []) is None


def test_summarize_and_compare_by_hand():
    """Pooled medians, IQR (linear interpolation, numpy's default), per-repeat ratios and FLOP efficiency, from
    hand-chosen step times."""
    runs = {
        "B0": [
            {"times": [4.0, 6.0, 5.0], "flops_per_step": 30.0, "peak_rss_mb": 100.0},
            {"times": [8.0, 4.0, 6.0], "flops_per_step": 30.0, "peak_rss_mb": 120.0},
            {"variant": "B0", "error": "worker exit 1"},
        ],
        "T4": [
            {"times": [2.0, 3.0, 2.5], "flops_per_step": 12.0, "peak_rss_mb": 80.0},
            {"times": [3.0, 2.0, 2.5], "flops_per_step": 12.0, "peak_rss_mb": 90.0},
        ],
    }
    summ = {v: common.summarize(r) for v, r in runs.items()}
    b0 = summ["B0"]
    assert b0["median_s"] == 5.5 and b0["n_timed"] == 6 and b0["repeat_medians_s"] == [5.0, 6.0]
    assert b0["iqr_s"] == pytest.approx(list(np.percentile([4, 6, 5, 8, 4, 6], [25, 75])))
    assert b0["iqr_s"] == pytest.approx([4.25, 6.0])
    assert b0["peak_rss_mb"] == 110.0 and b0["errors"] == ["worker exit 1"]
    c = common.compare(summ, runs, "B0", "T4")
    assert c["measured"] == 5.5 / 2.5
    assert c["per_repeat"] == [5.0 / 2.5, 6.0 / 2.5] and c["median_of_repeats"] == pytest.approx(2.2)
    assert c["predicted"] == 30.0 / 12.0 and c["efficiency"] == pytest.approx(2.2 / 2.5)
    assert c["ci95"] == common.ratio_ci([4.0, 6.0, 5.0, 8.0, 4.0, 6.0], [2.0, 3.0, 2.5, 3.0, 2.0, 2.5])
    assert common.compare(summ, runs, "B0", "T5") == {
        "measured": None,
        "ci95": None,
        "predicted": None,
        "efficiency": None,
    }


@pytest.mark.slow
def test_full_bench_train_shared_layout_beats_naive(tmp_path):
    """`basereward bench train` with the shipped settings (bench-size model, 448 px image, 3 interleaved repeats of
    8 timed steps; several minutes): every layout passes its gates against the naive one, the numbers reported
    fit together, and the prefix-shared layout is faster than the naive layout and TRL's RewardTrainer with the
    whole 95 % interval above 1 (README: 1.68x [1.60-1.77] against naive, FLOP model 1.74x)."""
    proc = subprocess.run(
        [sys.executable, "-m", "basereward", "bench", "train", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=2 * 3600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["train_gates_passed"] and set(out["train_gates"]) == {"B1", "T4", "T5", "TRL"}
    variants = out["train_variants"]
    for name, v in variants.items():
        assert not v["errors"] and v["n_timed"] == 3 * 8 and len(v["repeat_medians_s"]) == 3, name
    for key, slow, fast in (("train_speedup_vs_naive", "B0", "T4"), ("train_speedup_vs_trl", "TRL", "T4")):
        assert out[key] == variants[slow]["median_s"] / variants[fast]["median_s"], key
        lo, hi = out[key + "_ci95"]
        assert 1.0 < lo <= hi, (key, lo, hi)
    assert out["train_speedup_vs_naive_ci95"][0] > 1.2
    assert (
        1.0
        < out["train_predicted_vs_naive"]
        == pytest.approx(variants["B0"]["flops_per_step"] / variants["T4"]["flops_per_step"], rel=1e-12)
    )


def test_bench_paradigms_trains_and_measures_every_paradigm(tmp_path):
    """`bench paradigms` at the test size with a few steps (a smoke run, not a result): every paradigm trains and
    is measured, the counts are what each paradigm's scoring does (one backbone forward per naive pair, one per
    member for the ensemble, both answer orders of a generative pair in one forward, the critic's generated
    tokens on top), the report files are written, and a rerun reuses the finished runs."""
    from basereward.bench import paradigms_bench

    def args(*extra):
        p = argparse.ArgumentParser()
        paradigms_bench.add_args(p)
        return p.parse_args(
            ["--size", "test", "--pairs", "32", "--eval-pairs", "8", "--steps", "2", "--batch-size", "4"]
            + ["--critique-tokens", "8", "--cost-pairs", "2", "--workdir", str(tmp_path), *extra]
        )

    out = paradigms_bench.run(args())
    json.dumps(out)  # the CLI prints it as the last line
    for name in paradigms_bench.PARADIGMS:
        r = out[name]
        assert "error" not in r, (name, r.get("error"))
        for key in ("accuracy", "train_seconds", "score_seconds_per_pair", "generated_tokens_per_pair"):
            assert r[key] is not None, (name, key)
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["blank_accuracy"] <= 1.0, name
        assert 0 <= r["ties"] <= r["test_pairs"] == 8, name
        assert r["train_seconds"] > 0 and r["score_seconds_per_pair"] > 0, name
    naive, ens, gen, critic = (out[k] for k in ("naive", "ensemble", "generative", "critic"))
    assert naive["forwards_per_pair"] == 1.0 and ens["forwards_per_pair"] == 3 * naive["forwards_per_pair"]
    assert naive["generated_tokens_per_pair"] == 0 and ens["generated_tokens_per_pair"] == 0
    assert gen["forwards_per_pair"] == 1.0 and gen["judge_calls_per_pair"] == 2.0  # both orders, one forward
    assert gen["generated_tokens_per_pair"] == 0  # seed format: the verdict is read, not generated
    # the critic writes a critique of each response (at most --critique-tokens each) before its head scores
    assert 0 < critic["generated_tokens_per_pair"] <= 2 * 8
    assert critic["forwards_per_pair"] > naive["forwards_per_pair"]
    assert ens["train_seconds"] > naive["train_seconds"]  # three naive runs, the first of them the naive one
    assert len(ens["member_accuracy"]) == 3 and ens["member_accuracy"][0] == naive["accuracy"]
    report = tmp_path / "report"
    assert (report / "paradigms.png").stat().st_size > 0
    table = (report / "table.md").read_text()
    assert all(f"| {name} |" in table for name in paradigms_bench.PARADIGMS)
    assert "ensemble members alone (seeds 0, 1, 2)" in table
    assert json.loads((report / "paradigms.json").read_text())["naive"] == out["naive"]
    again = paradigms_bench.run(args("--paradigms", "naive"))
    assert set(again) & set(paradigms_bench.PARADIGMS) == {"naive"}
    assert again["naive"]["train_seconds"] == naive["train_seconds"]  # reused, not retrained
    assert again["naive"]["accuracy"] == naive["accuracy"]
