"""Several reward models behind one server (docs/server-api.md §5.3 "Multi-RM"): an ensemble averages raw rewards
(and each model's own normalized reward), and a text RM takes the text-only samples. Checked against each model
scored on its own through the in-process path."""

import pytest
from fastapi.testclient import TestClient
from serve_fixtures import data_uri, make_reward_model, png, ref_sample

from basereward.scoring import load_scorer
from basereward.serve.app import create_app
from basereward.serve.service import RewardService

OTHER_STATS = {"mean": -1.0, "std": 0.5, "n": 8, "split": "test"}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    return {
        "main": make_reward_model(root / "main"),
        "second": make_reward_model(root / "second", seed=5, stats=OTHER_STATS),
        "text": make_reward_model(root / "text", arch="qwen2", seed=2, stats=OTHER_STATS),
    }


@pytest.fixture(scope="module")
def scorers(dirs):
    return {k: load_scorer(d, device="cpu", progress=False) for k, d in dirs.items()}


@pytest.fixture(scope="module")
def client(dirs, scorers):
    svc = RewardService(
        scorers["main"],
        model_dir=dirs["main"],
        ensemble=[(scorers["second"], dirs["second"])],
        text_scorer=(scorers["text"], dirs["text"]),
        max_wait_ms=1.0,
    )
    with TestClient(create_app(svc)) as c:
        yield c


def messages(image: bool, response: str):
    if image:
        user = [
            {"type": "image_url", "image_url": {"url": data_uri(png("red"))}},
            {"type": "text", "text": "\nWhat colour is the shape?"},
        ]
    else:
        user = "What is 2 + 2?"
    return [{"role": "user", "content": user}, {"role": "assistant", "content": response}]


def test_ensemble_mean_and_text_routing(client, scorers):
    body = {
        "samples": [
            {"uid": "img", "messages": messages(True, "The shape is red.")},
            {"uid": "txt", "messages": messages(False, "4")},
        ],
        "return": ["normalized"],
    }
    r = client.post("/v1/reward", json=body)
    assert r.status_code == 200, r.text
    img, txt = r.json()["results"]
    image_sample, text_sample = ref_sample("red", "The shape is red."), ref_sample(response="4", image=False)
    a, b = (scorers[k]([image_sample])[0][0] for k in ("main", "second"))
    assert a != pytest.approx(b)  # two different models, so the mean is not either one
    assert img["raw"] == pytest.approx((a + b) / 2, abs=1e-5)
    assert img["normalized"] == pytest.approx(
        (scorers["main"].normalize(a) + scorers["second"].normalize(b)) / 2, abs=1e-5
    )
    t = scorers["text"]([text_sample])[0][0]  # the text-only sample goes to the text RM alone
    assert txt["raw"] == pytest.approx(t, abs=1e-5)
    assert txt["normalized"] == pytest.approx(scorers["text"].normalize(t), abs=1e-5)


def test_openrlhf_route_uses_the_same_models(client, scorers):
    r = client.post(
        "/get_reward",
        json={"query": ["<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>"]},
    )
    assert r.status_code == 200, r.text
    t = scorers["text"]([ref_sample(response="4", image=False)])[0][0]
    assert r.json()["rewards"][0] == pytest.approx(t, abs=1e-5)


def test_health_lists_every_model(client, dirs):
    models = client.get("/health").json()["models"]
    assert [(m["role"], m["model"]) for m in models] == [
        ("main", str(dirs["main"])),
        ("ensemble", str(dirs["second"])),
        ("text", str(dirs["text"])),
    ]
    assert models[2]["model_type"] == "qwen2" and models[1]["reward_stats"]["mean"] == -1.0


def test_cli_flags_build_the_ensemble(dirs):
    import argparse

    from basereward.serve import cli

    p = argparse.ArgumentParser()
    cli.add_args(p)
    args = p.parse_args(
        [
            "--model",
            str(dirs["main"]),
            "--ensemble-model",
            str(dirs["second"]),
            "--text-model",
            str(dirs["text"]),
            "--device",
            "cpu",
        ]
    )
    svc = cli.build_app(cli.ServeConfig.from_args(args)).state.service
    assert [m.role for m in svc.all_members] == ["main", "ensemble", "text"]
    assert svc.revision not in {m.revision for m in svc.all_members}  # the served reward names all three


def test_cli_refuses_a_token_budget_below_one(capsys):
    import argparse

    from basereward.serve import cli

    p = argparse.ArgumentParser()
    cli.add_args(p)
    with pytest.raises(SystemExit):
        p.parse_args(["--model", "m", "--max-batch-tokens", "0"])
    assert "--max-batch-tokens: 0 must be >= 1" in capsys.readouterr().err


def test_missing_ensemble_checkpoint_is_named(dirs, tmp_path, capsys):
    from basereward.cli import main

    argv = ["serve", "--model", str(dirs["main"]), "--ensemble-model", str(tmp_path / "nope"), "--port", "1"]
    assert main(argv) == 1
    assert f"basereward serve: error: {tmp_path / 'nope'}: no basereward.json" in capsys.readouterr().err
