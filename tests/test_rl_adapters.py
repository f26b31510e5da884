"""The RL adapters: TRL reward function inputs, verl `compute_score` called as verl calls it, the OpenRLHF reward
file and the HTTP scorer against a live server. Each gives the same token ids and rewards as `RewardScorer`."""

import inspect
import io
import json

import pytest
from PIL import Image
from serve_fixtures import (
    PROMPT,
    data_uri,
    live_server,
    make_reward_model,
    png,
    ref_sample,
    same_encoding,
    service,
)

from basereward.rl import openrlhf, verl
from basereward.rl.client import HttpScorer
from basereward.rl.rewards import sigmoid
from basereward.rl.samples import score_merged
from basereward.rl.trl import RewardFunction
from basereward.scoring import load_scorer
from basereward.serve.app import create_app


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    return make_reward_model(tmp_path_factory.mktemp("rl"))


@pytest.fixture(scope="module")
def scorer(rm_dir):
    return load_scorer(rm_dir, device="cpu", progress=False)


@pytest.fixture(scope="module")
def server(rm_dir):
    with live_server(create_app(service(rm_dir, max_wait_ms=2.0))) as url:
        yield url


def raw(scorer, sample):
    return scorer([sample])[0][0]


def trl_prompt(img):
    """A conversational prompt as TRL hands it to reward functions (images injected as parts)."""
    return [
        {
            "role": "user",
            "content": [{"type": "image", "image": img}, {"type": "text", "text": f"\n{PROMPT}"}],
        }
    ]


def test_trl_reward_fn_inputs_match_the_scoring_path(scorer):
    img = Image.open(io.BytesIO(png("red"))).convert("RGB")
    fn = RewardFunction(scorer)
    completions = [
        [{"role": "assistant", "content": "The shape is red."}],
        [{"role": "assistant", "content": "Blue."}],
    ]
    samples = fn.samples([trl_prompt(img)] * 2, completions, image=[img, img])
    assert same_encoding(scorer.encode(samples[0]), scorer.encode(ref_sample()))
    assert samples[0].images[0] is samples[1].images[0]  # the repeated image is converted once
    # an `images` column, and a plain string prompt (the image goes first in the user turn, as TRL places it)
    alt = fn.samples([[{"role": "user", "content": f"\n{PROMPT}"}]], ["The shape is red."], images=[[img]])
    assert same_encoding(scorer.encode(alt[0]), scorer.encode(ref_sample()))
    # hybrid: matches get 1, the rest sigmoid(raw); scoring shared prompts once gives the one-by-one numbers
    out = fn([trl_prompt(img)] * 2, completions, image=[img, img], solution=["blue", "blue"])
    assert out[1] == 1.0 and out[0] == pytest.approx(sigmoid(raw(scorer, ref_sample())), abs=1e-6)
    merged = score_merged(scorer, samples)
    assert merged == pytest.approx([raw(scorer, s) for s in samples], abs=1e-5)


def test_verl_compute_score_as_verl_calls_it(rm_dir, scorer):
    params = list(inspect.signature(verl.compute_score).parameters)
    assert params[:4] == ["data_source", "solution_str", "ground_truth", "extra_info"]
    extra_info = {
        "prompt": [{"role": "user", "content": f"<image>\n{PROMPT}"}],
        "images": [{"bytes": png("red"), "path": None}],
        "uid": "u7",
        "index": 3,
        "num_turns": 1,
    }
    reward_kwargs = {"model": str(rm_dir), "matcher": "normalized"}
    # verl's NaiveRewardManager: compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)
    miss = verl.compute_score(
        data_source="synthetic",
        solution_str="The shape is red.",
        ground_truth="blue",
        extra_info=extra_info,
        **reward_kwargs,
    )
    expected = raw(scorer, ref_sample())
    assert set(miss) == {"score", "raw", "prob", "match"}
    assert miss["raw"] == pytest.approx(expected, abs=1e-5) and miss["score"] == pytest.approx(
        sigmoid(expected)
    )
    assert miss["match"] == 0.0
    hit = verl.compute_score(
        data_source="synthetic",
        solution_str="The answer is blue.",
        ground_truth="blue",
        extra_info=extra_info,
        **reward_kwargs,
    )
    assert hit["score"] == 1.0 and hit["match"] == 1.0
    sample = verl.verl_sample("The shape is red.", extra_info)
    assert sample.id == "u7" and same_encoding(scorer.encode(sample), scorer.encode(ref_sample()))
    with pytest.raises(ValueError, match="prompt"):
        verl.compute_score("synthetic", "x", "y", extra_info={}, **reward_kwargs)


def test_verl_and_http_scorer_through_the_server(server, scorer):
    extra_info = {"question": f"<image>\n{PROMPT}", "images": [png("red")]}
    out = verl.compute_score("synthetic", "The shape is red.", "blue", extra_info, url=server)
    assert out["raw"] == pytest.approx(raw(scorer, ref_sample()), abs=1e-5)
    samples = [ref_sample(), ref_sample("blue", "The shape is blue."), ref_sample(response="4", image=False)]
    samples[0].responses.append("Green.")
    assert HttpScorer(server)(samples) == [pytest.approx(r, abs=1e-5) for r in scorer(samples)]


def test_openrlhf_reward_file(server, scorer, monkeypatch):
    monkeypatch.setenv("BASEREWARD_URL", server)
    enc = scorer.encode(ref_sample())
    tok = scorer.encoder.tokenizer
    prompt = tok.decode(enc.prompt.input_ids, skip_special_tokens=False)
    queries = [prompt + "The shape is red.<|im_end|>", prompt + "blue<|im_end|><|endoftext|>"]
    labels = [
        json.dumps({"gt": "blue", "images": [data_uri(png("red"))]}),
        {"gt": "blue", "images": [data_uri(png("red"))], "uid": 5},
    ]
    out = openrlhf.reward_func(queries, [prompt, prompt], labels)
    assert set(out) == {"rewards", "scores", "extra_logs"}
    r = out["rewards"].tolist()
    assert r[1] == 1.0  # "blue" matches the ground truth: the reward model is not consulted
    assert r[0] == pytest.approx(sigmoid(raw(scorer, ref_sample())), abs=1e-5)
    assert out["extra_logs"]["basereward_match"].tolist() == [0.0, 1.0]
    assert openrlhf.response_text(queries[1], prompt) == "blue"
