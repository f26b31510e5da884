"""`GET /metrics` is prometheus_client's exposition of a per-app registry: parsed with prometheus_client's parser,
every series moves as requests are served (successes, errors, unknown paths, batches), the memory-budget gauges
rise while requests are in flight or images are registered and fall back when they are answered or evicted, and
two apps in one process keep separate counts."""

import threading

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from serve_fixtures import data_uri, live_server, make_reward_model, metric, png, service

from basereward.serve.app import create_app
from basereward.serve.metrics import Metrics


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    return make_reward_model(tmp_path_factory.mktemp("metrics"))


def text_body(n: int) -> dict:
    msgs = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}]
    return {"samples": [{"messages": msgs} for _ in range(n)]}


def test_two_registries_in_one_process_count_separately():
    a, b = Metrics(), Metrics()  # the default global registry would refuse the second set of names
    a.record_request("/v1/reward", 200, 0.02)
    a.record_request("/v1/reward", 200, 0.3)
    a.record_batch(rows=3, forward_s=0.01, wait_s=0.001)
    b.record_samples("/classify", 5)
    ta, tb = a.render().decode(), b.render().decode()
    assert metric(ta, "basereward_requests_total", route="/v1/reward", code="200") == 2
    assert metric(tb, "basereward_requests_total", route="/v1/reward", code="200") == 0
    assert metric(ta, "basereward_request_latency_seconds_bucket", route="/v1/reward", le="0.025") == 1
    assert metric(ta, "basereward_request_latency_seconds_count", route="/v1/reward") == 2
    assert metric(ta, "basereward_batch_size_sum") == 3 and metric(ta, "basereward_batches_total") == 1
    assert metric(tb, "basereward_samples_total", route="/classify") == 5
    assert a.total("basereward_requests") == 2 and b.total("basereward_requests") == 0


def test_metric_types_and_names():
    m = Metrics()
    held = {"queue": 1234, "media": 567}
    m.watch(
        queue_depth=lambda: 3,
        max_batch_size=8,
        max_batch_tokens=None,
        queue_bytes=lambda: held["queue"],
        queue_budget_bytes=2048,
        media_cache_bytes=lambda: held["media"],
        media_cache_budget_bytes=None,
        media_cache_entries=lambda: 2,
    )
    families = text_string_to_metric_families(m.render().decode())
    # prometheus_client adds a `_created` timestamp series to each counter and histogram: not ours to check.
    types = {f.name: f.type for f in families if not f.name.endswith("_created")}
    assert types == {
        "basereward_requests": "counter",
        "basereward_samples": "counter",
        "basereward_request_latency_seconds": "histogram",
        "basereward_batches": "counter",
        "basereward_batch_size": "histogram",
        "basereward_forward_seconds": "histogram",
        "basereward_queue_wait_seconds": "histogram",
        "basereward_queue_depth": "gauge",
        "basereward_max_batch_size": "gauge",
        "basereward_max_batch_tokens": "gauge",
        "basereward_queue_bytes": "gauge",
        "basereward_queue_budget_bytes": "gauge",
        "basereward_media_cache_bytes": "gauge",
        "basereward_media_cache_budget_bytes": "gauge",
        "basereward_media_cache_entries": "gauge",
    }
    text = m.render().decode()
    assert metric(text, "basereward_queue_depth") == 3  # read at scrape time
    assert metric(text, "basereward_max_batch_size") == 8 and metric(text, "basereward_max_batch_tokens") == 0
    assert (
        metric(text, "basereward_queue_bytes") == 1234
        and metric(text, "basereward_queue_budget_bytes") == 2048
    )
    assert metric(text, "basereward_media_cache_bytes") == 567
    assert metric(text, "basereward_media_cache_budget_bytes") == 0  # unbounded
    assert metric(text, "basereward_media_cache_entries") == 2
    held.update(queue=0, media=99)  # the byte gauges are read at each scrape, never a stale copy
    text = m.render().decode()
    assert metric(text, "basereward_queue_bytes") == 0 and metric(text, "basereward_media_cache_bytes") == 99


def test_values_move_as_requests_are_served(rm_dir):
    with TestClient(create_app(service(rm_dir, max_wait_ms=1.0, max_batch_size=4))) as c:
        first = c.get("/metrics")
        assert first.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        before = first.text
        assert (
            metric(before, "basereward_max_batch_size") == 4 and metric(before, "basereward_queue_depth") == 0
        )
        assert c.post("/v1/reward", json=text_body(3)).status_code == 200
        assert c.post("/v1/reward", json=text_body(1)).status_code == 200
        assert c.post("/v1/reward", json={"samples": [{"messages": []}]}).status_code == 422
        assert c.get("/no/such/path").status_code == 404
        after = c.get("/metrics").text

    def moved(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert moved("basereward_requests_total", route="/v1/reward", code="200") == 2
    assert moved("basereward_requests_total", route="/v1/reward", code="422") == 1
    assert moved("basereward_requests_total", route="other", code="404") == 1  # unknown paths share one label
    assert moved("basereward_requests_total", route="/metrics", code="200") == 1  # the first scrape
    assert moved("basereward_samples_total", route="/v1/reward") == 4
    assert moved("basereward_request_latency_seconds_count", route="/v1/reward") == 3
    assert moved("basereward_batch_size_sum") == 4  # every scored sample went through a forward
    assert moved("basereward_batches_total") == moved("basereward_batch_size_count") >= 2
    assert moved("basereward_forward_seconds_count") == moved("basereward_batches_total")


def test_queue_bytes_rise_while_a_request_is_in_flight_and_return_to_zero(rm_dir):
    svc = service(rm_dir, max_wait_ms=0.0, max_queue_bytes=64 * 1024 * 1024)
    batcher = svc.members[0].batcher
    forward, entered, release = batcher.forward, threading.Event(), threading.Event()

    def held(encoded):  # keeps the request in flight (in its forward) until the test has scraped
        entered.set()
        release.wait(60)
        return forward(encoded)

    batcher.forward = held
    image = png("blue", size=(96, 96))
    msgs = [{"role": "user", "content": "<image>What colour?"}, {"role": "assistant", "content": "Blue."}]
    body = {"samples": [{"messages": msgs, "images": [data_uri(image)]}]}
    answer = []
    with live_server(create_app(svc)) as url:
        idle = httpx.get(f"{url}/metrics", timeout=60).text
        t = threading.Thread(
            target=lambda: answer.append(httpx.post(f"{url}/v1/reward", json=body, timeout=60)), daemon=True
        )
        t.start()
        assert entered.wait(60)
        busy = httpx.get(f"{url}/metrics", timeout=60).text
        held_now = svc.queue_budget.used
        release.set()
        t.join(60)
        after = httpx.get(f"{url}/metrics", timeout=60).text
    assert answer and answer[0].status_code == 200, answer
    assert metric(idle, "basereward_queue_bytes") == 0
    assert metric(idle, "basereward_queue_budget_bytes") == 64 * 1024 * 1024
    # in flight: its body (the image base64-encoded inside it), the decoded image bytes and its encoding
    assert metric(busy, "basereward_queue_bytes") == held_now >= len(data_uri(image)) + len(image)
    assert metric(after, "basereward_queue_bytes") == 0  # all of it returned once answered


def test_media_cache_bytes_follow_registrations_replacements_and_evictions(rm_dir):
    big, small = png("red", size=(112, 112)), png("green", size=(28, 28))
    budget = 2 * len(big) + len(small) // 2  # room for two big entries, not for a third entry on top
    with TestClient(create_app(service(rm_dir, media_cache_bytes=budget))) as c:

        def gauges():
            text = c.get("/metrics").text
            return tuple(
                metric(text, f"basereward_media_cache_{name}")
                for name in ("bytes", "entries", "budget_bytes")
            )

        assert gauges() == (0, 0, budget)
        for uid, image in (("a", big), ("b", big)):
            assert c.post("/v1/media", json={"uid": uid, "images": [data_uri(image)]}).status_code == 200
        assert gauges() == (2 * len(big), 2, budget)
        # replacing an entry frees its old images
        assert c.post("/v1/media", json={"uid": "a", "images": [data_uri(small)]}).status_code == 200
        assert gauges() == (len(big) + len(small), 2, budget)
        # a third entry goes over the budget: the least recently used (b) is evicted and its bytes come off
        assert c.post("/v1/media", json={"uid": "c", "images": [data_uri(big)]}).status_code == 200
        assert gauges() == (len(small) + len(big), 2, budget)
