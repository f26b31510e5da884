"""`basereward bench`: the quick smoke mode end to end (worker process, all variants, gates, JSON keys), the FLOP
model against the spec's published arithmetic, the workload's exact shapes, and the gate check itself. Timings are
never asserted: this machine is shared and these shapes are toys."""

import argparse
import json

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
    printed = capsys.readouterr().out
    assert "training (s/step" in printed and "scoring, G = 8" in printed


def test_flop_model_reproduces_the_spec_tables():
    """specs/performance.md section 1: 131.8 vs 76.3 TFLOP per training pair (P = 1,024 with 900 image tokens,
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


def test_ratio_ci_brackets_the_ratio():
    slow, fast = [2.0, 2.1, 1.9, 2.05, 2.2], [1.0, 1.1, 0.95, 1.05, 1.0]
    lo, hi = common.ratio_ci(slow, fast)
    assert lo <= 2.05 / 1.0 <= hi
