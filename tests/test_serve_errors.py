"""Bad requests get a 4xx whose message names the field; no request produces a 5xx or stops the server."""

import copy
import os

import pytest
from fastapi.testclient import TestClient
from serve_fixtures import PROMPT, data_uri, make_reward_model, png, service

from basereward.serve.app import create_app
from basereward.serve.media import MediaPolicy, RequestError, image_ref, url_allowed

ROUTES = ["/v1/reward", "/get_reward", "/classify", "/pooling", "/v1/embeddings", "/v1/score/evaluation"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    (d / "ok.png").write_bytes(png("blue"))
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.png").write_bytes(png("green"))
    os.symlink(outside / "secret.png", d / "link.png")
    return d


@pytest.fixture(scope="module")
def client(tmp_path_factory, root):
    rm = make_reward_model(tmp_path_factory.mktemp("serve-errors"))
    policy = MediaPolicy(image_root=root, max_images=2, max_image_pixels=150 * 150)
    app = create_app(service(rm, policy=policy, max_wait_ms=1.0, max_tokens=200), max_body_bytes=300_000)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def sample(content, response="The shape is red.", **extra):
    return {
        "messages": [{"role": "user", "content": content}, {"role": "assistant", "content": response}],
        **extra,
    }


def image_content(url):
    return [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": PROMPT}]


CASES = {
    "wrong type": ({"samples": [{"messages": "hello"}]}, 422, "samples[0].messages"),
    "wrong part type": (
        {"samples": [sample([{"type": "audio", "x": 1}])]},
        422,
        "samples[0].messages[0].content",
    ),
    "missing samples": ({"sample": []}, 422, "samples"),
    "missing response": (
        {"samples": [{"messages": [{"role": "user", "content": "hi"}]}]},
        422,
        "samples[0].messages",
    ),
    "empty response": ({"samples": [sample("hi", response="  ")]}, 422, "samples[0].messages[1].content"),
    "undecodable image": (
        {"samples": [sample(image_content("data:image/png;base64,iVBORw0KGgoAAAA="))]},
        422,
        "samples[0].messages[0].content[0].image_url.url",
    ),
    "invalid base64": (
        {"samples": [sample(image_content("data:image/png;base64,@@@"))]},
        422,
        "samples[0].messages[0].content[0].image_url.url",
    ),
    "over the pixel limit": (
        {"samples": [sample(image_content(data_uri(png(size=(200, 200)))))]},
        422,
        "samples[0].messages[0].content[0].image_url.url",
    ),
    "too many images": (
        {"samples": [sample("<image><image><image>hi", images=[data_uri(png())] * 3)]},
        422,
        "samples[0]",
    ),
    "images without placeholders": (
        {"samples": [sample("<image>hi", images=[data_uri(png())] * 2)]},
        422,
        "samples[0].images",
    ),
    "path with ..": (
        {"samples": [sample("<image>hi", images=["../outside/secret.png"])]},
        422,
        "samples[0].images[0]",
    ),
    "absolute path outside root": (
        {"samples": [sample("<image>hi", images=["/etc/hostname"])]},
        422,
        "samples[0].images[0]",
    ),
    "symlink out of root": (
        {"samples": [sample("<image>hi", images=["link.png"])]},
        422,
        "samples[0].images[0]",
    ),
    "remote URL, no allow-list": (
        {"samples": [sample(image_content("https://example.org/cat.png"))]},
        422,
        "samples[0].messages[0].content[0].image_url.url",
    ),
    "video_url": (
        {"samples": [sample([{"type": "video_url", "video_url": {"url": "x.mp4"}}])]},
        422,
        "samples[0].messages[0].content[0]",
    ),
    "over-length input": ({"samples": [sample("word " * 400)]}, 422, "samples[0]"),
    "video frame over the pixel limit": (
        {"samples": [sample("<video>hi", videos=[[data_uri(png(size=(200, 200)))]])]},
        422,
        "samples[0].videos[0][0]",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_native_bad_requests_name_the_field(client, name):
    body, code, field = CASES[name]
    r = client.post("/v1/reward", json=body)
    assert r.status_code == code, r.text
    err = r.json()
    assert field in err["error"]["message"] and err["error"]["code"] == code
    assert any(e["field"].startswith(field) for e in err["errors"]), err


def test_path_inside_root_is_accepted(client):
    r = client.post("/v1/reward", json={"samples": [sample("<image>hi", images=["ok.png"])]})
    assert r.status_code == 200, r.text


def test_errors_of_several_samples_are_all_listed(client):
    body = {
        "samples": [sample("<image>hi", images=["../x.png"]), sample("fine"), sample("<image>", images=[])]
    }
    r = client.post("/v1/reward", json=body)
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"samples[0].images[0]", "samples[2].images"}


def test_malformed_json_and_body_size(client):
    r = client.post("/get_reward", content=b'{"query": [', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]["message"]
    big = {"samples": [sample(image_content(data_uri(b"x" * 400_000)))]}
    r = client.post("/v1/reward", json=big)
    assert r.status_code == 413 and r.json()["error"]["param"] == "body"

    def chunked():  # no Content-Length: the limit is enforced while the body streams in
        for _ in range(40):
            yield b" " * 10_000

    r = client.post("/classify", content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 413


OTHER = [
    (
        "/get_reward",
        {"query": ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo"], "prompts": ["a", "b"]},
        "prompts",
    ),
    (
        "/get_reward",
        {
            "query": [
                "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n"
                "<|im_start|>assistant\nyo<|im_end|>"
            ]
        },
        "query[0]",
    ),
    ("/get_reward", {"query": ["no markup at all"]}, "query[0]"),
    ("/get_reward", {"query": ["<|im_start|>user\nhi<|im_end|>\n"]}, "query[0]"),
    ("/get_reward", {"query": [1]}, "query[0]"),
    ("/classify", {"input": "x", "messages": [{"role": "assistant", "content": "a"}]}, "input"),
    ("/classify", {"input": [1, 2, 10**9]}, "input"),
    ("/classify", {"input": []}, "input"),
    ("/classify", {"messages": [{"role": "robot", "content": "a"}]}, "messages[0].role"),
    ("/pooling", {"input": "x", "task": "embed"}, "task"),
    ("/v1/embeddings", {"input": "x", "encoding_format": "base64"}, "encoding_format"),
    ("/v1/score/evaluation", {"messages": "not a list"}, "messages"),
    (
        "/v1/score/evaluation",
        {"messages": ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo"], "max_length": 3},
        "messages[0]",
    ),
]


@pytest.mark.parametrize("path,body,field", OTHER, ids=[f"{p}:{f}" for p, _, f in OTHER])
def test_other_routes_bad_requests(client, path, body, field):
    r = client.post(path, json=body)
    assert 400 <= r.status_code < 500, r.text
    assert field in r.json()["error"]["message"], r.json()


VALID = {
    "/v1/reward": {
        "samples": [sample("<image>hi", images=[data_uri(png())], uid="u", group="g")],
        "return": ["prob"],
    },
    "/get_reward": {
        "query": ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>"],
        "prompts": [""],
        "labels": [{"gt": "yo"}],
        "uids": ["u"],
    },
    "/classify": {
        "model": "m",
        "input": "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo",
        "use_activation": False,
    },
    "/pooling": {"input": ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo"], "task": "classify"},
    "/v1/embeddings": {"model": "m", "input": "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo"},
    "/v1/score/evaluation": {
        "model": "m",
        "messages": ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo"],
    },
}
JUNK = [
    None,
    0,
    -1,
    1.5,
    True,
    "",
    "x",
    "data:image/png;base64,",
    [],
    [None],
    [[]],
    {},
    {"type": "image"},
    [1, -5],
]


def _mutations(body, path=()):
    """Every body with one value (a leaf or a whole sub-tree) replaced by junk."""
    yield path, None
    if isinstance(body, dict):
        for k, v in body.items():
            yield from (((k, *p), j) for p, j in _mutations(v, ()))
    elif isinstance(body, list):
        for i, v in enumerate(body):
            yield from (((i, *p), j) for p, j in _mutations(v, ()))


def _replace(body, path, value):
    out = copy.deepcopy(body)
    node = out
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return out


def test_no_request_produces_a_5xx(client):
    seen = 0
    for route, body in VALID.items():
        assert client.post(route, json=body).status_code == 200, route
        paths = {p for p, _ in _mutations(body) if p}
        for p in sorted(paths, key=str):
            for junk in JUNK:
                r = client.post(route, json=_replace(body, p, junk))
                assert r.status_code < 500, (route, p, junk, r.text)
                seen += 1
        for raw in (b"", b"null", b"[]", b'"x"', b"{", b"\xff\xfe", b'{"samples": [' * 50):
            r = client.post(route, content=raw, headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500, (route, raw, r.text)
    assert seen > 300
    assert client.get("/health").status_code == 200  # still serving


def test_url_allow_list_and_fetch(monkeypatch):
    prefixes = ("https://cdn.example.org/img/",)
    assert url_allowed("https://cdn.example.org/img/a.png", prefixes)
    assert not url_allowed("https://cdn.example.org.evil.com/img/a.png", prefixes)
    assert not url_allowed("https://cdn.example.org/other/a.png", prefixes)
    assert not url_allowed("http://cdn.example.org/img/a.png", prefixes)
    with pytest.raises(RequestError, match="refused"):
        image_ref("https://cdn.example.org/img/a.png", "f", MediaPolicy())
    import httpx

    class FakeStream:
        status_code = 200

        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def iter_bytes(self):
            yield png("red")

    monkeypatch.setattr(httpx, "stream", FakeStream)
    ref = image_ref("https://cdn.example.org/img/a.png", "f", MediaPolicy(allow_url_prefixes=prefixes))
    assert ref.load().size == (112, 112) and ref.where == "f"
