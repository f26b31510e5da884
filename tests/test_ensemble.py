"""Ensembles as saved models (basereward/ensemble.py, basereward/ensemble_cli.py): the combination arithmetic and
the three weighting strategies against hand numbers, with and without z-normalisation; weights measured on a small
validation file by stand-in scorers whose rewards are set by hand; the directory round trip; routing by modality;
bad ensemble.json named by file and field; and on tiny models, `basereward score / eval / serve --model ENSDIR`
against the members' own `score` outputs combined by hand.

The hand numbers. Two members A and B score four validation pairs (q1..q4, chosen a_i, rejected b_i):

    A: a1 4  b1 0 | a2 2  b2 0 | a3 0  b3 2 | a4 6  b4 2   accuracy 3/4, margin (4+2-2+4)/4 = 2, rewards mean 2, std 2
    B: a1 0  b1 1 | a2 2  b2 0 | a3 0  b3 1 | a4 3  b4 1   accuracy 2/4, margin (-1+2-1+2)/4 = 0.5, mean 1, std 1

so the weights are mean [1/2, 1/2]; val-acc [.75, .5]/1.25 = [.6, .4]; margin [2, .5]/2.5 = [.8, .2]; margin on the z
scale [2/2, .5/1]/1.5 = [2/3, 1/3]. On the sample (q1: a1, b1): A = [4, 0], B = [0, 1], and under z
A = [(4-2)/2, (0-2)/2] = [1, -1], B = [(0-1)/1, (1-1)/1] = [-1, 0].
"""

import hashlib
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from serve_fixtures import data_uri, make_reward_model, png

from basereward.cli import main
from basereward.ensemble import (
    EnsembleScorer,
    combine,
    load_ensemble,
    read_spec,
    served_ensemble,
    strategy_weights,
)
from basereward.ensemble_cli import build_ensemble
from basereward.scoring import compare, load_scorer
from basereward.types import DataError, ImageRef, Sample

A = {"a1": 4.0, "b1": 0.0, "a2": 2.0, "b2": 0.0, "a3": 0.0, "b3": 2.0, "a4": 6.0, "b4": 2.0}
B = {"a1": 0.0, "b1": 1.0, "a2": 2.0, "b2": 0.0, "a3": 0.0, "b3": 1.0, "a4": 3.0, "b4": 1.0}
A_Z, B_Z = {"mean": 2.0, "std": 2.0}, {"mean": 1.0, "std": 1.0}
Q1 = Sample([{"role": "user", "content": "q1"}], ["a1", "b1"])

# (strategy, normalize) -> (weights, rewards of Q1)
CASES = {
    ("mean", "none"): ([0.5, 0.5], [2.0, 0.5]),
    ("val-acc", "none"): ([0.6, 0.4], [2.4, 0.4]),
    ("margin", "none"): ([0.8, 0.2], [3.2, 0.2]),
    ("mean", "z"): ([0.5, 0.5], [0.0, -0.5]),
    ("val-acc", "z"): ([0.6, 0.4], [0.2, -0.6]),
    ("margin", "z"): ([2 / 3, 1 / 3], [1 / 3, -2 / 3]),
}


class StandIn:
    """A scorer whose rewards are a table: response text -> reward. Records the samples it was asked about."""

    def __init__(self, table: dict, reward_stats: dict | None = None):
        self.table, self.seen = table, []
        self.model = SimpleNamespace(reward_stats=reward_stats)

    def __call__(self, samples, progress=None):
        self.seen.extend(samples)
        return [[self.table[r] for r in s.responses] for s in samples]


def fake_checkpoint(path, reward_stats=None):
    """A directory with a valid basereward.json and no weights: enough to be named as a member."""
    from basereward.model.reward_model import POOLING_RULE

    path.mkdir(parents=True)
    meta = {
        "format_version": 1,
        "model_type": "qwen2",
        "head": {"layers": 2, "width": None, "activation": "silu", "dropout": 0.0},
        "pooling": {"rule": POOLING_RULE, "token": "<|im_end|>"},
        "reward_stats": reward_stats,
    }
    (path / "basereward.json").write_text(json.dumps(meta))
    return path


@pytest.fixture
def members(tmp_path):
    """Stand-in member directories (reward_stats = the validation statistics above) and their loader."""
    dirs = [fake_checkpoint(tmp_path / "A", A_Z), fake_checkpoint(tmp_path / "B", B_Z)]
    tables = {str(dirs[0].resolve()): A, str(dirs[1].resolve()): B}
    return dirs, lambda path: StandIn(tables[str(path)])


@pytest.fixture
def validation(tmp_path):
    rows = [{"id": f"p{i}", "prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(1, 5)]
    path = tmp_path / "val.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("case", CASES)
def test_combine_by_hand(case):
    weights, expected = CASES[case]
    stats = [A_Z, B_Z] if case[1] == "z" else None
    got = combine([[A["a1"], A["b1"]], [B["a1"], B["b1"]]], weights, stats)
    assert got == pytest.approx(expected, abs=1e-12)


def test_strategy_weights_by_hand_and_margins_clipped_at_zero():
    measured = [{"accuracy": 0.75, "margin": 2.0}, {"accuracy": 0.5, "margin": 0.5}]
    assert strategy_weights("mean", None, 3) == pytest.approx([1 / 3] * 3)
    assert strategy_weights("val-acc", measured, 2) == pytest.approx([0.6, 0.4])
    assert strategy_weights("margin", measured, 2) == pytest.approx([0.8, 0.2])
    # a member whose mean margin is <= 0 ranks no better than chance on average: weight 0, not a negative weight
    clipped = [{"margin": -0.5}, {"margin": 1.5}, {"margin": 0.0}]
    assert strategy_weights("margin", clipped, 3) == [0.0, 1.0, 0.0]
    with pytest.raises(DataError, match=r"every member's validation margin is <= 0 \(\[-0.5, 0.0\]\)"):
        strategy_weights("margin", [{"margin": -0.5}, {"margin": 0.0}], 2)
    with pytest.raises(DataError, match="needs validation pairs"):
        strategy_weights("val-acc", None, 2)


@pytest.mark.parametrize("case", CASES)
def test_weights_from_a_validation_file_and_the_directory_round_trip(case, members, validation, tmp_path):
    (strategy, normalize), (weights, expected) = case, CASES[case]
    dirs, load = members
    out = tmp_path / "ens"
    summary = build_ensemble(
        models=[str(d) for d in dirs],
        out=out,
        strategy=strategy,
        normalize=normalize,
        validation=validation,
        load_member=load,
    )
    assert summary["weights"] == pytest.approx(weights, abs=1e-12)
    saved = json.loads((out / "ensemble.json").read_text())
    assert saved["members"] == [{"path": str(d.resolve())} for d in dirs]
    assert (saved["strategy"], saved["normalize"]) == (strategy, normalize)
    v = saved["validation"]
    data = validation.read_bytes()
    assert (v["sha256"], v["bytes"], v["pairs"]) == (hashlib.sha256(data).hexdigest(), len(data), 4)
    assert [m["accuracy"] for m in v["members"]] == [0.75, 0.5]
    assert [m["raw_margin"] for m in v["members"]] == [2.0, 0.5]
    assert [m["margin"] for m in v["members"]] == ([1.0, 0.5] if normalize == "z" else [2.0, 0.5])
    if normalize == "z":  # measured on the validation rewards, not read from basereward.json
        assert saved["member_stats"] == [{**A_Z, "source": "validation"}, {**B_Z, "source": "validation"}]
    else:
        assert saved["member_stats"] is None
    if case == ("mean", "none"):
        # (A+B)/2 on the pairs: chosen 2, 2, 0, 4.5 vs rejected .5, 0, 1.5, 1.5: three of four right
        assert v["ensemble"]["accuracy"] == 0.75 and v["ensemble"]["margin"] == pytest.approx(1.25)
    ens = load_ensemble(out, load)
    assert ens([Q1]) == [pytest.approx(expected, abs=1e-12)]


def test_z_statistics_come_from_basereward_json_without_validation(members, tmp_path):
    dirs, load = members
    build_ensemble(models=[str(d) for d in dirs], out=tmp_path / "ens", normalize="z")
    spec = read_spec(tmp_path / "ens")
    assert spec.member_stats == [
        {**A_Z, "source": "basereward.json reward_stats"},
        {**B_Z, "source": "basereward.json reward_stats"},
    ]
    assert load_ensemble(tmp_path / "ens", load)([Q1]) == [pytest.approx([0.0, -0.5])]
    bare = fake_checkpoint(tmp_path / "bare")
    with pytest.raises(DataError, match=r"bare/basereward.json: field reward_stats: no mean/std"):
        build_ensemble(models=[str(dirs[0]), str(bare)], out=tmp_path / "e2", normalize="z")


def test_routing_by_modality_and_normalized_rewards():
    a, b = StandIn(A, {"mean": 0.25, "std": 2.0}), StandIn(B, {"mean": -1.0, "std": 1.0})
    text = StandIn({"4": 3.0, "5": -1.0}, {"mean": 1.0, "std": 2.0})
    ens = EnsembleScorer([a, b], text_scorer=text)
    text_sample = Sample([{"role": "user", "content": "What is 2 + 2?"}], ["4", "5"])
    image_sample = Sample([{"role": "user", "content": "<image>\nq1"}], ["a1", "b1"], [ImageRef(data=b"x")])
    raw, norm = ens.score([text_sample, image_sample])
    assert raw == [[3.0, -1.0], [2.0, 0.5]]  # the text model's own rewards; the members' mean
    assert norm[0] == [1.0, -1.0]  # (3 - 1) / 2, (-1 - 1) / 2: the text model's calibration
    # each member's own calibration, then the mean: ((4-.25)/2 + (0+1)/1)/2, ((0-.25)/2 + (1+1)/1)/2
    assert norm[1] == [1.4375, 0.9375]
    assert text.seen == [text_sample] and a.seen == b.seen == [image_sample]
    assert ens.normalize(2.0) == 2.0  # an ensemble has no scale of its own
    # without a text model every sample goes to the members
    assert EnsembleScorer([a, b])([Sample(text_sample.prompt, ["a2", "b2"])]) == [[2.0, 0.0]]
    # the server's flags build the same object: the plain mean, the text model routed alike
    flags = served_ensemble(a, "A", [(b, "B")], (text, "T"))
    assert (flags.weights, flags.text_scorer, flags.member_dirs) == ([0.5, 0.5], text, [Path("A"), Path("B")])
    assert served_ensemble(a, "A", [], None).weights == [1.0]  # one model: an ensemble of one
    with pytest.raises(DataError, match="take checkpoint directories, not ensemble directories"):
        served_ensemble(a, "A", [(ens, "E")], None)


def test_compare_gives_the_preferred_response_and_its_probability():
    scorer = StandIn({"x": 2.0, "y": 0.5})
    prompt = [{"role": "user", "content": "q"}]
    # sigmoid(2 - 0.5) = 1 / (1 + e^-1.5) = 0.8175744761936437
    assert compare(scorer, Sample(prompt, ["x", "y"])) == (0, pytest.approx(0.8175744761936437, abs=1e-15))
    assert compare(scorer, Sample(prompt, ["y", "x"])) == (1, pytest.approx(0.1824255238063563, abs=1e-15))
    assert compare(scorer, Sample(prompt, ["x", "x"])) == (0, 0.5)
    with pytest.raises(ValueError, match="two responses, got 3"):
        compare(scorer, Sample(prompt, ["x", "y", "x"]))


def edit_spec(directory, **changes):
    path = directory / "ensemble.json"
    spec = json.loads(path.read_text())
    spec.update(changes)
    path.write_text(json.dumps(spec))
    return path


def test_bad_ensemble_json_is_named_by_file_and_field(members, tmp_path):
    dirs, _ = members
    out = tmp_path / "ens"
    build_ensemble(models=[str(d) for d in dirs], out=out)
    good = json.loads((out / "ensemble.json").read_text())
    path = out / "ensemble.json"
    cases = [
        (
            {"members": [good["members"][0], {"path": str(tmp_path / "gone")}]},
            r"field members\[1\]\.path: .*gone",
        ),
        ({"weights": [0.5]}, r"field weights: must be a list of one number per member \(2\), got 1"),
        ({"weights": [-1.0, 2.0]}, r"field weights\[0\]: must be a finite number >= 0, got -1.0"),
        ({"weights": [0, 0]}, r"field weights: sum to 0"),
        ({"strategy": "vote"}, r"field strategy: 'vote' is not one of mean, val-acc, margin"),
        ({"normalize": "z", "member_stats": None}, r"field member_stats: normalize z needs"),
        ({"members": [{"path": str(out)}]}, r"field members\[0\]\.path: .* is itself an ensemble"),
        ({"weight": [1, 1]}, r"unknown fields \['weight'\]"),
    ]
    for change, message in cases:
        edit_spec(out, **change)
        with pytest.raises(DataError, match=f"{path}: {message}"):
            read_spec(out)
        path.write_text(json.dumps(good))
    path.write_text('{"members": [')
    with pytest.raises(DataError, match=rf"{path}: not valid JSON"):
        load_scorer(out)  # the dispatch in load_scorer reads the same file


def test_ensemble_verb_refuses_bad_requests(members, validation, tmp_path, capsys):
    dirs, _ = members
    base = ["ensemble", "--models", str(dirs[0]), str(dirs[1])]
    assert main([*base, "--strategy", "val-acc", "--out", str(tmp_path / "e")]) == 1
    assert "--strategy val-acc needs --validation PAIRS.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
    assert main([*base, "--out", str(dirs[0])]) == 1
    assert f"--out {dirs[0]}: exists and is not an empty folder" in capsys.readouterr().err
    assert (
        main(["ensemble", "--models", str(dirs[0]), str(tmp_path / "nope"), "--out", str(tmp_path / "e")])
        == 1
    )
    assert f"{tmp_path / 'nope'}: no basereward.json" in capsys.readouterr().err
    # every member below chance on the validation pairs: no margin weights
    worse = fake_checkpoint(tmp_path / "W")
    flipped = {k: -v for k, v in A.items()}
    with pytest.raises(DataError, match="every member's validation margin is <= 0"):
        build_ensemble(
            models=[str(worse)],
            out=tmp_path / "e",
            strategy="margin",
            validation=validation,
            load_member=lambda p: StandIn(flipped),
        )


# --- tiny models: score / eval / serve --model ENSDIR -------------------------------------------------------------

PROMPT = "<image>\nWhat colour is the shape?"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble-tiny")
    dirs = {
        "a": make_reward_model(root / "a"),
        "b": make_reward_model(root / "b", seed=5, stats={"mean": -1.0, "std": 0.5, "n": 8, "split": "test"}),
        "t": make_reward_model(root / "t", arch="qwen2", seed=2),
    }
    (root / "images").mkdir()
    for colour in ("red", "green"):
        (root / "images" / f"{colour}.png").write_bytes(png(colour))
    rows = [
        {"id": "red", "prompt": PROMPT, "images": ["images/red.png"], "chosen": "The shape is red.",
         "rejected": "The shape is blue."},
        {"id": "red-flipped", "prompt": PROMPT, "images": ["images/red.png"], "chosen": "The shape is blue.",
         "rejected": "The shape is red."},  # one of this and "red" is wrong: accuracy below 1
        {"id": "green", "prompt": PROMPT, "images": ["images/green.png"], "chosen": "It is green.",
         "rejected": "It is red."},
        {"id": "text", "prompt": "What is 2 + 2?", "images": [], "chosen": "4", "rejected": "5"},
    ]  # fmt: skip
    pairs, text_pairs = root / "pairs.jsonl", root / "text-pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text_pairs.write_text(json.dumps(rows[-1]) + "\n")  # the text RM (qwen2) cannot take the images
    return {**dirs, "root": root, "pairs": pairs, "text_pairs": text_pairs, "rows": rows}


def cli_json(capsys, *argv) -> dict:
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def scores(capsys, tiny, model, name, data="pairs") -> list[dict]:
    out = tiny["root"] / f"{name}.scores.jsonl"
    cli_json(capsys, "score", "--model", model, "--input", tiny[data], "--output", out, "--device", "cpu")
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture(scope="module")
def ensdir(tiny):
    out = tiny["root"] / "ens"
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["ensemble", "--models", str(tiny["a"]), str(tiny["b"]), "--text-model", str(tiny["t"]),
                     "--validation", str(tiny["pairs"]), "--device", "cpu", "--out", str(out)]) == 0  # fmt: skip
    return out


def test_score_with_an_ensemble_dir_is_the_hand_mean_of_its_members(tiny, ensdir, capsys):
    a, b = (scores(capsys, tiny, tiny[k], k) for k in ("a", "b"))
    t = [None, None, None, *scores(capsys, tiny, tiny["t"], "t", data="text_pairs")]
    e = scores(capsys, tiny, ensdir, "ens")
    for i, row in enumerate(tiny["rows"]):
        for side in ("chosen", "rejected"):
            key = f"reward_{side}"
            expected = t[i][key] if not row["images"] else (a[i][key] + b[i][key]) / 2
            assert e[i][key] == pytest.approx(expected, abs=1e-5)
            assert e[i][f"normalized_{side}"] == e[i][key]  # an ensemble has no scale of its own
    assert a[0]["reward_chosen"] != pytest.approx(b[0]["reward_chosen"], abs=1e-3)  # the mean is neither
    # the members were measured on the three image pairs only (the text pair goes to the text model)
    v = json.loads((ensdir / "ensemble.json").read_text())["validation"]
    assert (v["pairs"], v["text_only_pairs_left_out"]) == (3, 1)
    assert v["members"][0]["accuracy"] == pytest.approx(sum(x["correct"] for x in a[:3]) / 3)
    assert v["members"][1]["raw_margin"] == pytest.approx(
        sum(x["reward_chosen"] - x["reward_rejected"] for x in b[:3]) / 3, abs=1e-5
    )


def test_eval_takes_an_ensemble_dir(tiny, ensdir, capsys):
    e = scores(capsys, tiny, ensdir, "ens-for-eval")
    result = cli_json(capsys, "eval", "--benchmark", "pairs", "--data", tiny["pairs"], "--model", ensdir)
    correct = [x["correct"] for x in e]
    assert not all(correct)  # the flipped pair
    assert result["n"] == 4 and result["accuracy"] == pytest.approx(100 * sum(correct) / 4)  # percent


def test_serve_an_ensemble_dir_answers_what_score_writes(tiny, ensdir, capsys):
    from fastapi.testclient import TestClient

    from basereward.serve.cli import ServeConfig, build_app

    e = scores(capsys, tiny, ensdir, "ens-for-serve")
    samples = []
    for row in tiny["rows"]:
        for side in ("chosen", "rejected"):
            if row["images"]:
                image = data_uri((tiny["root"] / row["images"][0]).read_bytes())
                user = [{"type": "image_url", "image_url": {"url": image}},
                        {"type": "text", "text": row["prompt"].removeprefix("<image>")}]  # fmt: skip
            else:
                user = row["prompt"]
            messages = [{"role": "user", "content": user}, {"role": "assistant", "content": row[side]}]
            samples.append({"uid": f"{row['id']}-{side}", "messages": messages})
    app = build_app(ServeConfig(model=str(ensdir), device="cpu", max_wait_ms=1.0))
    with TestClient(app) as client:
        r = client.post("/v1/reward", json={"samples": samples})
        assert r.status_code == 200, r.text
        health = client.get("/health").json()
    got = [x["raw"] for x in r.json()["results"]]
    want = [rec[f"reward_{side}"] for rec in e for side in ("chosen", "rejected")]
    assert got == pytest.approx(want, abs=1e-5)
    models = health["models"]
    assert [(m["role"], m["weight"]) for m in models] == [("main", 0.5), ("ensemble", 0.5), ("text", None)]
    assert [m["model"] for m in models] == [str(tiny[k].resolve()) for k in ("a", "b", "t")]
    assert health["revision"] not in {m["revision"] for m in models}
    with pytest.raises(DataError, match="is an ensemble directory: its members and text model are listed"):
        build_app(ServeConfig(model=str(ensdir), ensemble_models=(str(tiny["a"]),), device="cpu"))


def test_z_normalised_copy_moves_as_a_unit(tiny, tmp_path, capsys):
    out = tmp_path / "ens"
    summary = cli_json(capsys, "ensemble", "--models", tiny["a"], tiny["b"], "--normalize", "z", "--copy",
                       "--out", out)  # fmt: skip
    assert summary["members"] == ["members/0-rm", "members/1-rm"]
    moved = tmp_path / "moved"
    shutil.move(out, moved)
    image = Sample([{"role": "user", "content": PROMPT}], ["The shape is red."], [ImageRef(data=png("red"))])
    ens = load_scorer(moved, device="cpu", progress=False)
    a, b = (load_scorer(tiny[k], device="cpu", progress=False)([image])[0][0] for k in ("a", "b"))
    # reward_stats from basereward.json: a (mean .25, std 2), b (mean -1, std .5)
    assert ens([image])[0][0] == pytest.approx(((a - 0.25) / 2 + (b + 1) / 0.5) / 2, abs=1e-5)
    assert not math.isclose(a, b)
