"""`basereward score`: one output line per pair, the summary as the last stdout line, and bad input named."""

import json

import pytest

from basereward.cli import main
from basereward.data.io import read_pairs
from basereward.data.synthetic import synthesize
from basereward.model.processor import load_processor
from basereward.model.reward_model import RewardModel, load_reward_model
from basereward.scoring import RewardScorer


@pytest.fixture(scope="module")
def model_dir(tiny_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "rm"
    model = RewardModel.from_backbone(tiny_dirs["qwen2_5_vl"], seed=2)
    model.reward_stats = {"mean": 0.1, "std": 2.0, "n": 10, "split": "validation"}
    model.save(out, load_processor(tiny_dirs["qwen2_5_vl"], "qwen2_5_vl"))
    return out


def test_score_writes_one_line_per_pair_and_a_summary(tmp_path, model_dir, capsys):
    synthesize(tmp_path / "d", pairs=4, eval_pairs=6, seed=1)
    out = tmp_path / "scores.jsonl"
    assert (
        main(
            [
                "score",
                "--model",
                str(model_dir),
                "--input",
                str(tmp_path / "d" / "test.jsonl"),
                "--output",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert summary["n"] == len(lines) == 6 and summary["output"] == str(out)
    scorer = RewardScorer(*load_reward_model(model_dir))
    pairs = read_pairs(tmp_path / "d" / "test.jsonl")
    expected = scorer([p.as_sample() for p in pairs])
    for rec, pair, (c, r) in zip(lines, pairs, expected):
        assert rec["id"] == pair.id
        assert rec["reward_chosen"] == pytest.approx(c, abs=1e-5)
        assert rec["reward_rejected"] == pytest.approx(r, abs=1e-5)
        assert rec["normalized_chosen"] == pytest.approx((rec["reward_chosen"] - 0.1) / 2.0)
        assert rec["correct"] == (rec["reward_chosen"] > rec["reward_rejected"])
    assert summary["accuracy"] == sum(x["correct"] for x in lines) / 6


def test_score_bad_input_names_the_line_and_writes_nothing(tmp_path, model_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi", "chosen": "a", "rejected": "b"}\n{"prompt": "x", "chosen": "a"}\n')
    out = tmp_path / "scores.jsonl"
    assert main(["score", "--model", str(model_dir), "--input", str(bad), "--output", str(out)]) == 1
    assert f"{bad}:2" in capsys.readouterr().err
    assert not out.exists()


def test_typed_score_writes_beside_the_input_what_the_cli_writes(tmp_path, model_dir, capsys):
    from basereward.score_cli import score

    synthesize(tmp_path / "d", pairs=4, eval_pairs=5, seed=2)
    data = tmp_path / "d" / "test.jsonl"
    cli_out = tmp_path / "cli.jsonl"
    argv = [
        "score",
        "--model",
        str(model_dir),
        "--input",
        str(data),
        "--output",
        str(cli_out),
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    cli_summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = score(model=model_dir, input=data, device="cpu")
    default = tmp_path / "d" / "test.scores.jsonl"  # no output given: beside the input
    assert summary["output"] == str(default) and summary["n"] == 5 and summary["skipped"] == 0
    assert default.read_text() == cli_out.read_text()
    drop = {"output", "pairs_per_s"}
    assert {k: v for k, v in summary.items() if k not in drop} == {
        k: v for k, v in cli_summary.items() if k not in drop
    }
