"""Server hardening (issue 12): memory bounded by bytes (media registry, request bodies and queued work), the
per-request deadline (503 + Retry-After, dropped unscored), the optional API key, local paths confined to the
image root, and graceful shutdown on SIGTERM of a real `basereward serve` process."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from serve_fixtures import live_server, make_reward_model, png, service

from basereward.serve import cli
from basereward.serve.app import create_app
from basereward.serve.media import MediaPolicy, MediaRegistry, RequestError, image_ref
from basereward.serve.service import Busy
from basereward.types import ImageRef

CHAT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo"
REPO = Path(__file__).resolve().parents[1]
TEXT = {
    "samples": [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]
}


@pytest.fixture(scope="module")
def rm(tmp_path_factory):
    return make_reward_model(tmp_path_factory.mktemp("hardening"))


class Gate:
    """Wraps a batcher's forward: records each call and holds it until `open()`, so a test can keep requests in
    flight (queued behind the held forward) for as long as it needs."""

    def __init__(self, batcher):
        self.forward, self.calls = batcher.forward, 0
        self.entered, self.released = threading.Event(), threading.Event()
        batcher.forward = self

    def __call__(self, enc):
        self.calls += 1
        self.entered.set()
        self.released.wait(60)
        return self.forward(enc)

    def open(self):
        self.released.set()


def post_in_thread(url, body, out):
    t = threading.Thread(target=lambda: out.append(httpx.post(url, json=body, timeout=60)), daemon=True)
    t.start()
    return t


# ---- memory bounded by bytes ----------------------------------------------------------------------------------


def test_media_registry_evicts_least_recently_used_by_bytes():
    reg = MediaRegistry(max_bytes=250)
    blob = lambda n: [ImageRef(data=b"x" * n)]  # noqa: E731
    reg.put("a", blob(100))
    reg.put("b", blob(100))
    assert reg.get("a") is not None  # a is now the most recently used
    reg.put("c", blob(100))  # 300 bytes > 250: the least recently used (b) goes, not the oldest put (a)
    assert "b" not in reg and "a" in reg and "c" in reg and reg.bytes == 200
    reg.put("a", blob(40))  # replacing an entry frees its old bytes
    assert reg.bytes == 140 and len(reg) == 2
    reg.put("d", blob(200))  # 340 > 250: c (older than the re-put a) goes, and that is enough
    assert "c" not in reg and "a" in reg and reg.bytes == 240
    with pytest.raises(RequestError, match="budget"):  # over the whole budget alone: refused, nothing evicted
        reg.put("e", blob(251))
    assert "d" in reg and reg.bytes == 240


def test_queue_byte_budget_refuses_with_429_and_retry_after(rm):
    svc = service(rm, max_queue_bytes=1, max_wait_ms=0.0)  # 1 byte: any request alone is admitted, no second
    gate = Gate(svc.members[0].batcher)
    first = []
    with live_server(create_app(svc)) as url:
        t = post_in_thread(f"{url}/v1/reward", TEXT, first)
        assert gate.entered.wait(60)
        held = svc.queue_budget.used
        assert held > 0  # the first request's body and encodings are counted while it is in flight
        r = httpx.post(
            f"{url}/v1/reward", json=TEXT, timeout=60
        )  # with Content-Length: refused before reading

        def chunked():
            yield json.dumps(TEXT).encode()

        r2 = httpx.post(
            f"{url}/classify", content=chunked(), headers={"content-type": "application/json"}, timeout=60
        )
        # The service's own check (encodings of a request the middleware did not see) refuses too.
        with pytest.raises(Busy, match="max-queue-mb"):
            import asyncio

            from basereward.serve.routes_common import ServeState

            st = ServeState.of(svc)
            asyncio.run(svc.score(lambda: st.parse_inputs(types.SimpleNamespace(input=CHAT)), "/x"))
        gate.open()
        t.join(60)
        assert svc.queue_budget.used == 0  # everything returned once answered
    for resp in (r, r2):
        assert resp.status_code == 429, resp.text
        assert resp.headers["retry-after"] == "1"
        err = resp.json()["error"]
        assert err["type"] == "rate_limit_error" and "max-queue-mb" in err["message"]
    assert first[0].status_code == 200, first[0].text


def test_chunked_body_over_the_limit_is_413_on_a_live_server(rm):
    # TestClient hands the app the whole body at once; uvicorn streams it: the limit must hold there too.
    app = create_app(service(rm), max_body_bytes=50_000)

    def chunked():
        for _ in range(20):
            yield b" " * 10_000

    with live_server(app) as url:
        r = httpx.post(
            f"{url}/classify", content=chunked(), headers={"content-type": "application/json"}, timeout=60
        )
    assert r.status_code == 413 and r.json()["error"]["param"] == "body"


# ---- deadline --------------------------------------------------------------------------------------------------


def test_request_past_its_deadline_is_503_and_dropped_unscored(rm):
    svc = service(rm, request_timeout_s=3.0, max_batch_size=1, max_wait_ms=0.0)
    gate = Gate(svc.members[0].batcher)
    a, b = [], []
    with live_server(create_app(svc)) as url:
        ta = post_in_thread(f"{url}/v1/reward", TEXT, a)
        assert gate.entered.wait(60)  # a is in a forward; b queues behind it
        tb = post_in_thread(f"{url}/v1/reward", TEXT, b)
        ta.join(60)
        tb.join(60)
        gate.open()
        c = httpx.post(f"{url}/v1/reward", json=TEXT, timeout=60)  # queued after b: runs once b was skipped
    for r in (a[0], b[0]):
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1" and "timed out" in r.json()["error"]["message"]
    assert c.status_code == 200, c.text
    assert gate.calls == 2  # a's forward (already running) and c's: b never reached the model


def test_a_failing_sample_is_500_or_422_by_cause_and_its_batch_mates_are_answered(rm):
    """The batcher isolates a sample whose forward fails; the service answers it by cause: a client mistake found
    at scoring time (DataError) is 422, anything else (an out-of-memory, a bug) a 500 naming the field, and every
    other request that shared its batch gets its 200."""
    from basereward.types import DataError

    svc = service(rm, max_batch_size=8, max_wait_ms=200.0)
    batcher = svc.members[0].batcher
    forward = batcher.forward

    tok = svc.members[0].scorer.encoder.processor.tokenizer
    boom, bad = (tok(t, add_special_tokens=False)["input_ids"] for t in ("boom boom boom", "bad answer"))

    def starts(encoded, ids):  # requests with one prompt arrive merged: look at every response
        return any(list(r[: len(ids)]) == ids for e in encoded for r in e.responses)

    def poisoned(encoded):
        if starts(encoded, boom):
            raise RuntimeError("device out of memory")
        if starts(encoded, bad):
            raise DataError("a sample the model cannot take")
        return forward(encoded)

    batcher.forward = poisoned

    def body(answer):
        return {
            "samples": [
                {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": answer}]}
            ]
        }

    answers = ["yo", "boom boom boom", "hello there", "bad answer", "fine thanks"]
    out = {a: [] for a in answers}
    with live_server(create_app(svc)) as url:
        threads = [post_in_thread(f"{url}/v1/reward", body(a), out[a]) for a in answers]
        for t in threads:
            t.join(60)
    status = {a: out[a][0].status_code for a in answers}
    assert status == {
        "yo": 200,
        "boom boom boom": 500,
        "hello there": 200,
        "bad answer": 422,
        "fine thanks": 200,
    }
    err = out["boom boom boom"][0].json()["error"]
    assert "RuntimeError: device out of memory" in err["message"] and err["type"] == "server_error"
    assert "DataError" in out["bad answer"][0].json()["error"]["message"]


# ---- API key ---------------------------------------------------------------------------------------------------


def test_api_key_guards_every_route_but_health(rm):
    app = create_app(service(rm, max_wait_ms=0.0), api_key="s3cret")
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.get("/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            for method, path in (
                ("post", "/v1/reward"),
                ("get", "/metrics"),
                ("get", "/docs"),
                ("get", "/x"),
            ):
                if method == "post":
                    r = c.post(path, json=TEXT, headers=headers)
                else:
                    r = c.get(path, headers=headers)
                assert r.status_code == 401, (path, headers, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
                assert r.json()["errors"][0]["field"] == "authorization"
        ok = {"Authorization": "Bearer s3cret"}
        assert c.post("/v1/reward", json=TEXT, headers=ok).status_code == 200
        assert c.get("/v1/models", headers={"Authorization": "bearer s3cret"}).status_code == 200
        assert c.get("/x", headers=ok).status_code == 404
        metrics = c.get("/metrics", headers=ok).text
    assert 'code="401"' in metrics  # refusals are counted like every other answer


def test_api_key_flag_env_and_build_app_wiring(rm, monkeypatch):
    p = __import__("argparse").ArgumentParser()
    cli.add_args(p)
    monkeypatch.setenv(cli.API_KEY_ENV, "from-env")
    assert cli.ServeConfig.from_args(p.parse_args(["--model", "m"])).api_key == "from-env"
    c = cli.ServeConfig.from_args(p.parse_args(["--model", "m", "--api-key", "flag"]))
    assert c.api_key == "flag" and "flag" not in repr(c)
    assert cli.ServeConfig.host == "127.0.0.1"  # loopback unless told otherwise
    app = cli.build_app(
        cli.ServeConfig(model=str(rm), device="cpu", api_key="k", media_cache_mb=0.5, max_queue_mb=2.0)
    )
    svc = app.state.service
    assert svc.media.max_bytes == 512 * 1024 and svc.queue_budget.capacity == 2 * 1024 * 1024
    with TestClient(app) as client:
        assert client.post("/v1/reward", json=TEXT).status_code == 401
        assert client.post("/v1/reward", json=TEXT, headers={"Authorization": "Bearer k"}).status_code == 200


@pytest.mark.parametrize(
    "host,key,warned",
    [("0.0.0.0", None, True), ("::", None, True), ("[::]", None, True), ("0.0.0.0", "k", False)]
    + [("127.0.0.1", None, False)],
)
def test_warning_when_every_interface_is_bound_without_a_key(monkeypatch, capsys, host, key, warned):
    svc = types.SimpleNamespace(
        model_name="rm", revision="r", max_batch_size=1, max_wait_ms=0.0, metrics=cli_metrics()
    )
    monkeypatch.setattr(
        cli, "build_app", lambda c: types.SimpleNamespace(state=types.SimpleNamespace(service=svc))
    )
    monkeypatch.setitem(sys.modules, "uvicorn", types.SimpleNamespace(run=lambda *a, **k: None))
    monkeypatch.setattr(__import__("gc"), "freeze", lambda: None)
    cli.serve(cli.ServeConfig(model="m", host=host, api_key=key))
    assert ("WARNING" in capsys.readouterr().err) == warned


def cli_metrics():
    from basereward.serve.metrics import Metrics

    return Metrics()


# ---- local paths and remote URLs -------------------------------------------------------------------------------


def test_local_paths_stay_inside_the_image_root(tmp_path, monkeypatch):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "ok.png").write_bytes(png())
    (outside / "secret.png").write_bytes(png("green"))
    os.symlink(outside / "secret.png", root / "link.png")  # a file symlink out of the root
    os.symlink(outside, root / "dirlink")  # a directory symlink out of the root
    policy = MediaPolicy(image_root=root)
    assert image_ref("ok.png", "f", policy).path == str((root / "ok.png").resolve())
    assert image_ref(f"file://{root}/ok.png", "f", policy).path is not None
    refused = ["link.png", "dirlink/secret.png", "../outside/secret.png", "sub/../ok.png"]
    refused += [str(outside / "secret.png"), f"file://{root}/../outside/secret.png", "missing.png"]
    for path in refused:
        with pytest.raises(RequestError) as e:
            image_ref(path, "samples[0].images[0]", policy)
        assert e.value.field == "samples[0].images[0]", path
    # with no root, no path at all
    with pytest.raises(RequestError, match="disabled"):
        image_ref(str(root / "ok.png"), "f", MediaPolicy())


def test_remote_urls_only_when_allow_listed(monkeypatch):
    import httpx as real

    fetched = []

    class FakeStream:
        def __init__(self, method, url, **kw):
            fetched.append((url, kw))
            self.status_code = 302 if "redirect" in url else 200

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def iter_bytes(self):
            yield png()

    monkeypatch.setattr(real, "stream", FakeStream)
    allow = MediaPolicy(allow_url_prefixes=("https://cdn.example.org/img/",))
    for url, policy in [
        ("https://cdn.example.org/img/a.png", MediaPolicy()),  # no allow-list: nothing remote
        ("https://cdn.example.org@evil.example/img/a.png", allow),  # userinfo trick: the host is evil.example
        ("https://cdn.example.org/imgx/a.png", allow),
        ("ftp://cdn.example.org/img/a.png", allow),
    ]:
        with pytest.raises(RequestError):
            image_ref(url, "f", policy)
    assert fetched == []  # refused without a single fetch
    with pytest.raises(RequestError, match="HTTP 302"):  # redirects are not followed
        image_ref("https://cdn.example.org/img/redirect.png", "f", allow)
    assert fetched[-1][1]["follow_redirects"] is False
    assert image_ref("https://cdn.example.org/img/a.png", "f", allow).data == png()


# ---- graceful shutdown -----------------------------------------------------------------------------------------

# `basereward serve` as the command line runs it, with each model forward delayed, so a request is still in flight
# when SIGTERM arrives.
SLOW_SERVE = """
import pathlib, sys, time
from basereward.scoring import RewardScorer
marker, delay, argv = pathlib.Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
original = RewardScorer.score_encoded
def slow(self, *a, **k):
    marker.touch()
    time.sleep(delay)
    return original(self, *a, **k)
RewardScorer.score_encoded = slow
from basereward.cli import main
sys.exit(main(argv))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_finishes_the_request_in_flight_and_exits_0(rm, tmp_path):
    port, marker = free_port(), tmp_path / "forward-started"
    url = f"http://127.0.0.1:{port}"
    argv = ["serve", "--model", str(rm), "--device", "cpu", "--port", str(port), "--max-wait-ms", "0"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SERVE, str(marker), "4", *argv],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "server did not start"
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        answer = []
        t = post_in_thread(f"{url}/v1/reward", TEXT, answer)
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline and t.is_alive(), answer
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        with pytest.raises(httpx.TransportError):  # no longer accepting, while the forward still runs
            httpx.get(f"{url}/health", timeout=5)
        t.join(60)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert answer and answer[0].status_code == 200, (answer, err[-3000:])
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["requests"] >= 2  # /health polls and the scored request, counted before exit
