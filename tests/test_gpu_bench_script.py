"""scripts/gpu_bench.py without a GPU: argument parsing, the --dry-run plan and FLOP predictions, and --smoke-cpu,
which runs every code path (preflight, model building, the registered attention functions, timing, budget,
summary) at toy width on the CPU."""

import importlib.util
import json
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_bench.py"


@pytest.fixture(scope="module")
def gpu_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_arguments(gpu_bench):
    a = gpu_bench.parse_args(["--budget-s", "300", "--variants", "B0,T4,S3", "--image-grid", "32x28"])
    assert a.budget_s == 300 and a.variants == ["B0", "T4", "S3"] and a.grid == (1, 32, 28)
    with pytest.raises(SystemExit):
        gpu_bench.parse_args(["--variants", "B0,X9"])


def test_dry_run_plan_and_predictions(gpu_bench, capsys, tmp_path):
    assert gpu_bench.main(["--dry-run", "--json-out", str(tmp_path / "plan.json")]) == 0
    out = last_json(capsys.readouterr().out)
    assert out == json.loads((tmp_path / "plan.json").read_text())
    assert out["dry_run"] and out["plan"]["prompt_tokens"] == 1024  # 896 image tokens + 128 text
    r = out["predicted_ratios"]
    # reduced-depth training (LLM 6 / ViT 8) and full-depth scoring at P = 1,024, r = 256, G = 8
    assert 1.6 < r["T4_vs_B0"] < 1.9 and r["T5_vs_B0"] > r["T4_vs_B0"]
    assert r["S3_vs_S1"] == pytest.approx(3.80, abs=0.02)  # spec section 1: 3.80x without an LM head
    assert 3.9 < r["S3_vs_S0"] < 4.2  # + LM logits: "add 5-7 %"


def test_smoke_cpu_runs_every_variant(gpu_bench, capsys):
    assert gpu_bench.main(["--smoke-cpu", "--budget-s", "240"]) == 0
    printed = capsys.readouterr().out
    out = last_json(printed)
    assert out["device"].startswith("cpu")
    assert set(out["variants"]) == {"B0", "T4", "B1", "T5", "S0", "S3", "S1"}
    for v, r in out["variants"].items():
        assert "error" not in r and "reward_check_error" not in r, (v, r)
        assert r["median_s"] > 0 and r["reward_rel_diff"] <= 1e-4  # fp32 on CPU: the layouts agree
    assert out["variants"]["T4"]["attention"].startswith("reference")  # went through the registered functions
    assert "== GPU bench on cpu" in printed and "go/no-go" in printed


def test_budget_stops_cleanly(gpu_bench, capsys):
    """A budget too small for anything (16 s: less than the 15 s kept back for the summary plus the 30 s a phase
    needs to start) still ends with the summary and the JSON line, says why it stopped, and reports no number."""
    t0 = time.time()
    assert gpu_bench.main(["--smoke-cpu", "--budget-s", "16"]) == 0
    printed = capsys.readouterr().out
    out = last_json(printed)
    assert len(out["notes"]) == 1 and out["notes"][0].startswith("stopped early: "), out["notes"]
    assert out["variants"] == {}  # no phase started, so no variant ran or was timed
    assert set(out["measured_ratios"]) == set(out["predicted_ratios"])
    assert all(r is None for r in out["measured_ratios"].values())
    assert all(g is None for g in out["go_no_go"].values())
    assert out["train_speedup_vs_naive"] is None and out["score_speedup_g8"] is None
    assert out["elapsed_s"] <= time.time() - t0 <= 16 + 10  # stopped by the budget (+ summary, exit, load)
    assert "notes: ['stopped early: " in printed
