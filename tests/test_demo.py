"""The demo end to end (tiny sizes) and the synthetic benchmark sets it writes in each official schema."""

import json
from collections import Counter

from basereward.data.benchmarks import load_benchmark
from basereward.data.io import read_pairs
from basereward.data.synthetic import synthesize
from basereward.eval.synthetic_sets import write_all


def test_synthetic_sets_round_trip_through_the_official_loaders(tmp_path):
    synthesize(tmp_path / "data", pairs=10, eval_pairs=60, seed=2)
    test = read_pairs(tmp_path / "data" / "test.jsonl")
    image_pairs = [p for p in test if p.images]
    sets = write_all(test, tmp_path / "sets")

    def key(p):
        return p.prompt[-1]["content"].replace("<image>", "").strip(), p.chosen

    truth = {key(p) for p in image_pairs}

    vl = load_benchmark("vl-rewardbench", *sets["vl-rewardbench"])
    assert len(vl) == len(image_pairs)
    assert {key(p) for p in vl} == truth
    mm = load_benchmark("multimodal-rewardbench", *sets["multimodal-rewardbench"])
    assert len(mm) == len(image_pairs)
    assert {key(p) for p in mm} == truth
    rl = load_benchmark("mm-rlhf-rewardbench", *sets["mm-rlhf-rewardbench"])
    per_query = Counter(p.meta["group"] for p in rl)
    assert len(rl) > len(image_pairs) and max(per_query.values()) >= 2
    assert any(p.videos for p in rl) and all(p.chosen != p.rejected for p in rl)


def test_demo_end_to_end_tiny(tmp_path, capsys):
    from basereward.cli import main

    rc = main(
        ["demo", "--out", str(tmp_path / "demo"), "--steps", "3", "--train-pairs", "40", "--eval-pairs", "40"]
    )
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in (
        "heldout_accuracy",
        "image_blind_accuracy",
        "text_only_accuracy",
        "train_pairs",
        "train_seconds",
        "model_dir",
    ):
        assert key in result, key
    assert result["train_pairs"] == 40
    for name in ("vl-rewardbench", "multimodal-rewardbench", "mm-rlhf-rewardbench"):
        report = tmp_path / "demo" / "reports" / name
        assert (report / "metrics.json").is_file() and (report / "report.md").is_file()
        assert result["benchmarks"][name]["report"] == str(report)
