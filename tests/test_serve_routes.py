"""Every server route with TestClient: request/response shapes exactly as docs/server-api.md, values equal to the
in-process scoring path, and template parity (each route's request turns into the token ids `RewardScorer.encode`
gives the same sample)."""

import math

import pytest
from fastapi.testclient import TestClient
from serve_fixtures import (
    PROMPT,
    STATS,
    data_uri,
    decoded_query,
    make_reward_model,
    png,
    ref_sample,
    same_encoding,
    service,
)

from basereward.scoring import load_scorer
from basereward.serve.app import create_app
from basereward.serve.media import MediaPolicy
from basereward.serve.parse import parse_get_reward, sample_from_messages, sample_from_text
from basereward.serve.protocols import GetRewardRequest, RewardRequest


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    return make_reward_model(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def scorer(rm_dir):
    return load_scorer(rm_dir, device="cpu", progress=False)


@pytest.fixture(scope="module")
def client(rm_dir):
    app = create_app(service(rm_dir, max_wait_ms=1.0))
    with TestClient(app) as c:
        yield c


def ref_raw(scorer, sample) -> float:
    return scorer([sample])[0][0]


def chat(image_part=True, response="The shape is red."):
    user = [
        {"type": "image_url", "image_url": {"url": data_uri(png("red"))}},
        {"type": "text", "text": f"\n{PROMPT}"},
    ]
    return [
        {"role": "user", "content": user if image_part else "What is 2 + 2?"},
        {"role": "assistant", "content": response},
    ]


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_native_reward_shape_and_values(client, scorer):
    body = {
        "samples": [{"uid": "a", "messages": chat()}, {"messages": chat(image_part=False, response="4")}],
        "return": ["raw", "normalized", "prob"],
    }
    r = client.post("/v1/reward", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"results", "model", "revision", "timing"}
    assert set(out["timing"]) == {"queue_ms", "preprocess_ms", "forward_ms"}
    assert [set(x) for x in out["results"]] == [{"uid", "raw", "normalized", "prob"}] * 2
    a, b = out["results"]
    assert a["uid"] == "a" and b["uid"] is None
    assert a["raw"] == pytest.approx(ref_raw(scorer, ref_sample()), abs=1e-5)
    assert b["raw"] == pytest.approx(ref_raw(scorer, ref_sample(response="4", image=False)), abs=1e-5)
    assert a["normalized"] == pytest.approx((a["raw"] - STATS["mean"]) / STATS["std"])
    assert a["prob"] == pytest.approx(sigmoid(a["raw"]))
    # default `return` is raw only
    only_raw = client.post("/v1/reward", json={"samples": [{"messages": chat()}]}).json()["results"][0]
    assert only_raw["normalized"] is None and only_raw["prob"] is None
    assert only_raw["raw"] == pytest.approx(a["raw"], abs=1e-5)


@pytest.mark.parametrize("form", ["image_url", "placeholder_part", "tag_in_text", "no_placeholder"])
def test_native_image_forms_give_the_training_token_ids(scorer, form):
    """Every way of attaching the image yields the sample `RewardScorer.encode` sees (template parity)."""
    uri = data_uri(png("red"))
    text = {"type": "text", "text": f"\n{PROMPT}"}
    content, images = {
        "image_url": ([{"type": "image_url", "image_url": {"url": uri}}, text], []),
        "placeholder_part": ([{"type": "image"}, text], [uri]),
        "tag_in_text": (f"<image>\n{PROMPT}", [uri]),
        "no_placeholder": (f"\n{PROMPT}", [uri]),  # placed at the start of the first user turn
    }[form]
    req = RewardRequest(
        samples=[
            {
                "messages": [
                    {"role": "user", "content": content},
                    {"role": "assistant", "content": "The shape is red."},
                ],
                "images": images,
            }
        ]
    )
    s = req.samples[0]
    sample = sample_from_messages(s.messages, s.images, s.videos, "samples[0]", MediaPolicy())
    assert same_encoding(scorer.encode(sample), scorer.encode(ref_sample()))


def test_openrlhf_get_reward(client, scorer):
    sample = ref_sample()
    query = decoded_query(scorer, sample)  # left pads, expanded image pads, trailing <|im_end|>
    assert query.startswith("<|endoftext|>") and query.count("<|image_pad|>") > 1
    body = {"query": [query], "prompts": [""], "labels": [None], "images": [[data_uri(png("red"))]]}
    r = client.post("/get_reward", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"rewards", "scores", "extra_logs"}
    raw = ref_raw(scorer, sample)
    assert out["rewards"] == [pytest.approx(raw, abs=1e-5)]
    assert out["scores"] == [pytest.approx(sigmoid(raw), abs=1e-6)]
    assert all(len(v) == 1 for v in out["extra_logs"].values())
    # images carried in a label object instead of the `images` extension; plain OpenRLHF text-only queries work
    body = {"query": [query], "prompts": [""], "labels": [{"gt": "red", "images": [data_uri(png("red"))]}]}
    assert client.post("/get_reward", json=body).json()["rewards"] == out["rewards"]
    text_q = decoded_query(scorer, ref_sample(response="4", image=False), left_pads=0)
    got = client.post("/get_reward", json={"query": [text_q], "prompts": [""], "labels": [None]}).json()
    assert got["rewards"] == [pytest.approx(ref_raw(scorer, ref_sample(response="4", image=False)), abs=1e-5)]
    # parity: the decoded query becomes exactly the training token ids
    parsed = parse_get_reward(GetRewardRequest(**body | {"query": [query]}), MediaPolicy())
    assert same_encoding(scorer.encode(parsed[0].sample), scorer.encode(sample))


def verl_text(scorer, sample) -> str:
    """verl's DisRM input: raw_prompt + assistant response rendered with the RM tokenizer's chat template."""
    msgs = sample.prompt + [{"role": "assistant", "content": sample.responses[0]}]
    return scorer.encoder.tokenizer.apply_chat_template(msgs, tokenize=False)


@pytest.mark.parametrize("path", ["/classify", "/v1/classify"])
def test_classify_vllm_contract(client, scorer, path):
    sample = ref_sample(response="4", image=False)
    text, raw = verl_text(scorer, sample), ref_raw(scorer, sample)
    assert same_encoding(scorer.encode(sample_from_text(text, "input", MediaPolicy())), scorer.encode(sample))
    r = client.post(path, json={"model": "/some/rm/path", "input": text, "use_activation": False})
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"id", "object", "created", "model", "data", "usage"}
    assert out["object"] == "list" and out["model"] == "/some/rm/path"
    assert set(out["data"][0]) == {"index", "label", "probs", "num_classes"}
    assert out["data"][-1]["probs"][-1] == pytest.approx(raw, abs=1e-5) and out["data"][0]["num_classes"] == 1
    assert set(out["usage"]) >= {"prompt_tokens", "total_tokens"}
    # default is raw; use_activation and the legacy activation flag give sigmoid
    assert client.post(path, json={"input": text}).json()["data"][0]["probs"][0] == pytest.approx(
        raw, abs=1e-5
    )
    for flag in (
        {"use_activation": True},
        {"activation": True},
        {"activation": False, "use_activation": True},
    ):
        got = client.post(path, json={"input": text, **flag}).json()["data"][0]["probs"][0]
        assert got == pytest.approx(sigmoid(raw), abs=1e-6), flag
    # a list of texts, token ids, and chat messages with an image part
    ids = scorer.encoder.tokenizer(text, add_special_tokens=False)["input_ids"]
    out = client.post(path, json={"input": [text, text]}).json()
    assert [d["index"] for d in out["data"]] == [0, 1]
    assert client.post(path, json={"input": ids}).json()["data"][0]["probs"][0] == pytest.approx(
        raw, abs=1e-5
    )
    got = client.post(path, json={"messages": chat()}).json()["data"][0]["probs"][0]
    assert got == pytest.approx(ref_raw(scorer, ref_sample()), abs=1e-5)


def test_pooling_embeddings_and_llamafactory(client, scorer):
    sample = ref_sample(response="4", image=False)
    text, raw = verl_text(scorer, sample), ref_raw(scorer, sample)
    pool = client.post("/pooling", json={"model": "m", "input": text, "task": "classify"}).json()
    assert set(pool) == {"id", "object", "created", "model", "data", "usage"}
    assert pool["data"] == [{"index": 0, "object": "pooling", "data": [pytest.approx(raw, abs=1e-5)]}]
    emb = client.post("/v1/embeddings", json={"model": "m", "input": text}).json()
    assert set(emb) == {"object", "data", "model", "usage"}
    assert emb["data"] == [{"object": "embedding", "index": 0, "embedding": [pytest.approx(raw, abs=1e-5)]}]
    ev = client.post(
        "/v1/score/evaluation", json={"model": "model", "messages": [text], "max_length": None}
    ).json()
    assert set(ev) == {"id", "object", "model", "scores"}
    assert ev["id"].startswith("scoreval-") and ev["object"] == "score.evaluation"
    assert ev["scores"] == [pytest.approx(raw, abs=1e-5)]


def test_health_models_metrics(client, rm_dir):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model_type"] == "qwen2_5_vl" and len(h["revision"]) == 12
    assert h["head"]["activation"] == "silu" and h["reward_stats"]["mean"] == STATS["mean"]
    m = client.get("/v1/models").json()
    assert m["object"] == "list" and m["data"][0]["id"] == str(rm_dir) and m["data"][0]["object"] == "model"
    text = client.get("/metrics").text
    for name in (
        "basereward_requests_total",
        "basereward_batch_size_bucket",
        "basereward_request_latency_seconds_bucket",
        "basereward_samples_total",
    ):
        assert name in text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_every_contract_route_is_served(client):
    """The routers composed by create_app serve exactly the contracts of docs/server-api.md, each its method."""
    paths = client.get("/openapi.json").json()["paths"]
    methods = {path: sorted(ops) for path, ops in paths.items()}
    post = [
        "/v1/reward",
        "/v1/media",
        "/get_reward",
        "/classify",
        "/v1/classify",
        "/pooling",
        "/v1/embeddings",
    ]
    post.append("/v1/score/evaluation")
    assert methods == {
        **{p: ["post"] for p in post},
        **{p: ["get"] for p in ("/health", "/v1/models", "/metrics")},
    }


def test_serve_verb_builds_the_app(rm_dir, tmp_path):
    import argparse

    from basereward.serve.cli import ServeConfig, add_args, build_app

    p = argparse.ArgumentParser()
    add_args(p)
    args = p.parse_args(
        [
            "--model",
            str(rm_dir),
            "--device",
            "cpu",
            "--max-batch-size",
            "4",
            "--image-root",
            str(tmp_path),
            "--get-reward-path",
            "/reward",
        ]
    )
    assert args.host == "127.0.0.1"  # loopback unless told otherwise
    with TestClient(build_app(ServeConfig.from_args(args))) as c:
        assert c.get("/health").json()["max_batch_size"] == 4
        assert (
            c.post(
                "/reward", json={"query": ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo"]}
            ).status_code
            == 200
        )


def test_native_video_as_frames(client, scorer):
    from basereward.types import ImageRef, Sample, VideoRef

    frames = [png("red"), png("blue")]
    ref = Sample(
        [{"role": "user", "content": "<video>\nWhat happens?"}],
        ["It turns blue."],
        videos=[VideoRef(frames=tuple(ImageRef(data=f) for f in frames))],
    )
    body = {
        "samples": [
            {
                "messages": [
                    {"role": "user", "content": "<video>\nWhat happens?"},
                    {"role": "assistant", "content": "It turns blue."},
                ],
                "videos": [[data_uri(f) for f in frames]],
            }
        ]
    }
    r = client.post("/v1/reward", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["raw"] == pytest.approx(ref_raw(scorer, ref), abs=1e-5)


def test_media_registry_lets_text_only_openrlhf_queries_carry_images(client, scorer):
    """POST /v1/media registers a uid's images once; a /get_reward query sent with only that uid is scored with
    them, exactly like a query that carries the images itself. Unknown uids still get the named 422."""
    sample = ref_sample()
    query = decoded_query(scorer, sample)
    r = client.post("/v1/media", json={"uid": "prompt-7", "images": [data_uri(png("red"))]})
    assert r.status_code == 200, r.text
    assert r.json()["uid"] == "prompt-7" and r.json()["images"] == 1 and r.json()["registered"] >= 1
    by_uid = client.post("/get_reward", json={"query": [query], "prompts": [""], "uids": ["prompt-7"]})
    assert by_uid.status_code == 200, by_uid.text
    assert by_uid.json()["rewards"] == [pytest.approx(ref_raw(scorer, sample), abs=1e-5)]
    in_label = client.post(
        "/get_reward", json={"query": [query], "prompts": [""], "labels": [{"uid": "prompt-7"}]}
    )
    assert in_label.json()["rewards"] == by_uid.json()["rewards"]
    unknown = client.post("/get_reward", json={"query": [query], "prompts": [""], "uids": ["nobody"]})
    assert unknown.status_code == 422 and "query[0]" in unknown.text


def test_media_registration_rejects_bad_images_by_field(client):
    r = client.post(
        "/v1/media", json={"uid": "u", "images": [data_uri(png("red")), "data:image/png;base64,AAAA"]}
    )
    assert r.status_code == 422 and "images[1]" in r.text
    assert client.post("/v1/media", json={"uid": "u", "images": []}).status_code == 422
    assert client.post("/v1/media", json={"uid": "u", "images": ["/etc/passwd"]}).status_code == 422
