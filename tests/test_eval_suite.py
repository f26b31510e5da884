"""`basereward eval --suite paper`: every benchmark folder under --data-root scored per model, each row equal to
the five single-benchmark runs, the averages recomputed here by hand, two models named apart (both `final`),
each loaded once; a missing benchmark skipped and named with the averages over what is present; flags that do
not go together refused."""

import json
import shutil
from pathlib import Path

import pytest

from basereward.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark-samples"
# suite column -> (benchmark, key of that benchmark's own result line)
COLUMNS = {
    "vl_rewardbench_overall": ("vl-rewardbench", "overall"),
    "mm_rlhf_acc": ("mm-rlhf-rewardbench", "acc"),
    "mm_rlhf_acc_plus": ("mm-rlhf-rewardbench", "acc_plus"),
    "multimodal_rewardbench_overall": ("multimodal-rewardbench", "overall"),
    "rewardbench": ("rewardbench", "score"),
    "rm_bench": ("rm-bench", "overall"),
    "vl_rewardbench_macro": ("vl-rewardbench", "macro"),
    "mmrb_coding": ("multimodal-rewardbench", "reasoning_coding"),
    "rewardbench_chat_hard": ("rewardbench", "chat_hard"),
    "rm_bench_hard": ("rm-bench", "hard"),
}
MM = ["vl_rewardbench_overall", "mm_rlhf_acc", "mm_rlhf_acc_plus", "multimodal_rewardbench_overall"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The demo's benchmark-schema sets (synthetic image pairs) plus the real text samples, one folder each."""
    from basereward.data.io import read_pairs
    from basereward.data.synthetic import synthesize
    from basereward.eval.synthetic_sets import write_all

    base = tmp_path_factory.mktemp("suite")
    synthesize(base / "syn", pairs=0, eval_pairs=24, seed=5, text_share=0.0)
    root = base / "root"
    write_all(read_pairs(base / "syn" / "test.jsonl"), root)
    (root / "rewardbench").mkdir()
    shutil.copy(FIXTURES / "rewardbench.jsonl", root / "rewardbench" / "rewardbench.jsonl")
    (root / "rm-bench").mkdir()
    shutil.copy(FIXTURES / "rm_bench.jsonl", root / "rm-bench" / "total_dataset.jsonl")
    return root


def run(capsys, *argv) -> tuple[int, dict | None, str]:
    rc = main(["eval", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, (json.loads(out.strip().splitlines()[-1]) if rc == 0 else None), err


def single(capsys, root: Path, benchmark: str, *who) -> dict:
    rc, res, err = run(capsys, "--benchmark", benchmark, "--data", root / benchmark, *who)
    assert rc == 0, err
    return res


def test_the_suite_row_equals_the_five_single_runs_and_its_averages(root, tmp_path, capsys):
    rc, res, err = run(
        capsys, "--suite", "paper", "--data-root", root, "--scorer", "length", "--out", tmp_path
    )
    assert rc == 0, err
    assert res["skipped"] == [] and list(res["models"]) == ["length"]
    row = res["models"]["length"]
    singles = {b: single(capsys, root, b, "--scorer", "length") for b, _ in set(COLUMNS.values())}
    for col, (bench, key) in COLUMNS.items():
        assert row[col] == singles[bench][key], col
    assert row["multimodal_avg"] == pytest.approx(sum(row[c] for c in MM) / 4, rel=1e-12)
    assert row["pure_text_avg"] == pytest.approx((row["rewardbench"] + row["rm_bench"]) / 2, rel=1e-12)
    assert row["multimodal_avg_over"] == MM and row["pure_text_avg_over"] == ["rewardbench", "rm_bench"]
    table = (tmp_path / "paper-table.md").read_text()
    assert "| length |" in table and "| BaseReward (paper, Qwen2.5-VL-7B) | 81.79 |" in table
    saved = json.loads((tmp_path / "paper-table.json").read_text())
    assert saved["models"]["length"] == row and saved["paper"]["mm_rlhf_acc_plus"] == 80.43
    for bench in ("vl-rewardbench", "rm-bench"):  # each benchmark's own report beside the table
        assert (tmp_path / "length" / bench / "report.md").is_file()


def test_a_missing_benchmark_is_skipped_and_named_and_the_averages_say_over_what(root, tmp_path, capsys):
    part = tmp_path / "root"
    for bench in ("vl-rewardbench", "rewardbench"):
        shutil.copytree(root / bench, part / bench)
    rc, res, err = run(
        capsys, "--suite", "paper", "--data-root", part, "--scorer", "length", "--out", tmp_path
    )
    assert rc == 0, err
    assert res["skipped"] == ["mm-rlhf-rewardbench", "multimodal-rewardbench", "rm-bench"]
    assert "skipping rm-bench: no " in err
    row = res["models"]["length"]
    assert row["mm_rlhf_acc"] is None and row["rm_bench"] is None
    assert row["multimodal_avg"] == row["vl_rewardbench_overall"] and row["multimodal_avg_over"] == MM[:1]
    assert row["pure_text_avg"] == row["rewardbench"]
    table = (tmp_path / "paper-table.md").read_text()
    assert "(1/4)" in table and "(1/2)" in table and "Skipped: mm-rlhf-rewardbench" in table


@pytest.fixture(scope="module")
def two_models(tiny_dirs, tmp_path_factory):
    """Two tiny reward models with different heads, both saved as `final` (as two training runs write them)."""
    import torch

    from basereward.model.processor import load_processor
    from basereward.model.reward_model import RewardModel

    base = tmp_path_factory.mktemp("suite_models")
    dirs = []
    for name, seed in (("a", 1), ("b", 2)):
        model = RewardModel.from_backbone(tiny_dirs["qwen2_5_vl"], seed=seed)
        with torch.no_grad():  # spread the rewards so that no pair is a near-tie
            for p in model.head.parameters():
                p.normal_(0, 0.5)
        dirs.append(model.save(base / name / "final", load_processor(tiny_dirs["qwen2_5_vl"], "qwen2_5_vl")))
    return dirs


def test_two_models_get_a_row_each_named_apart_and_are_loaded_once(
    root, two_models, tmp_path, capsys, monkeypatch
):
    import basereward.scoring

    loads = []
    real = basereward.scoring.load_scorer
    monkeypatch.setattr(basereward.scoring, "load_scorer", lambda d, **kw: loads.append(d) or real(d, **kw))
    a, b = two_models
    argv = ["--suite", "paper", "--data-root", root, "--model", a, "--model", b, "--limit", 4]
    rc, res, err = run(capsys, *argv, "--out", tmp_path)
    assert rc == 0, err
    assert list(res["models"]) == ["a/final", "b/final"] and loads == [str(a), str(b)]
    assert (tmp_path / "a" / "final" / "rewardbench" / "report.html").is_file()
    saved = json.loads((tmp_path / "b" / "final" / "rm-bench" / "metrics.json").read_text())
    assert saved["model"] == str(Path(b).resolve())  # the report names the directory the scorer came from
    # model a against its five single runs; model b against one (its row differs from a's)
    for name, model, benches in (("a/final", a, None), ("b/final", b, {"mm-rlhf-rewardbench"})):
        ones = {
            bench: single(capsys, root, bench, "--model", model, "--limit", 4)
            for bench, _ in set(COLUMNS.values())
            if benches is None or bench in benches
        }
        for col, (bench, key) in COLUMNS.items():
            if bench in ones:
                assert res["models"][name][col] == ones[bench][key], (name, col)
    assert res["models"]["a/final"] != res["models"]["b/final"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--suite", "paper", "--benchmark", "rewardbench", "--data-root", "x"], "drop --benchmark"),
        (["--suite", "paper"], "--suite needs --data-root"),
        (["--benchmark", "rewardbench", "--data", "x", "--data-root", "y"], "--data-root goes with --suite"),
        (["--benchmark", "rewardbench"], "give --benchmark and --data"),
        (["--benchmark", "rewardbench", "--data", "x", "--model", "a", "--model", "b"], "one --model per"),
    ],
)
def test_flags_that_do_not_go_together_are_refused(argv, message, capsys):
    who = [] if "--model" in argv else ["--scorer", "length"]
    rc, _, err = run(capsys, *argv, *who)
    assert rc == 1 and message in err, err


def test_model_names_grow_a_path_tail_until_they_differ():
    from basereward.eval.suite import model_names

    runs = ["/r/demo/train/final", "/r/demo-1/train/final", "/r/other"]
    assert model_names(runs) == {
        "/r/demo/train/final": "demo/train/final",
        "/r/demo-1/train/final": "demo-1/train/final",
        "/r/other": "other",
    }
