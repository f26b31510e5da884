"""The one retry policy of the reward-server clients (basereward.rl.retry): which answers are retried, how long it
waits (backoff, cap, Retry-After), how it gives up; and both clients (HttpScorer on httpx, the OpenRLHF file on
urllib) driven through it against a scripted local HTTP server on 127.0.0.1. No network, no model."""

import contextlib
import json
import socket
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from serve_fixtures import ref_sample

from basereward.rl import openrlhf
from basereward.rl.client import HttpScorer
from basereward.rl.retry import Reply, RetryError, backoff_s, retry_after_seconds, with_retries

URL = "http://rm.test/get_reward"


class Script:
    """A `send` that plays back answers (Reply) or raises (exceptions) in order, counting attempts."""

    def __init__(self, *steps):
        self.steps, self.calls = list(steps), 0

    def __call__(self) -> Reply:
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        if isinstance(step, BaseException):
            raise step
        return step


def run(send, **kw):
    waits = []
    kw.setdefault("jitter", lambda: 1.0)  # the top of the jitter range: waits are exactly the backoff
    return with_retries(send, URL, sleep=waits.append, **kw), waits


def test_success_after_busy_and_refused_connections():
    send = Script(Reply(429, b"busy"), ConnectionRefusedError("refused"), Reply(200, b'{"rewards": [1]}'))
    reply, waits = run(send, retries=5, base_s=0.5, cap_s=10.0)
    assert reply.body == b'{"rewards": [1]}' and send.calls == 3
    assert waits == [0.5, 1.0]  # exponential: base * 2^attempt


def test_backoff_is_capped_and_attempts_are_retries_plus_one():
    send = Script(Reply(503, b"upstream down"))
    with pytest.raises(RetryError) as err:
        run(send, retries=5, base_s=0.5, cap_s=3.0)
    assert send.calls == 6
    assert err.value.status == 503 and err.value.url == URL
    assert str(err.value) == f"reward server {URL} answered 503: upstream down; gave up after 6 attempts"


def test_waits_are_spread_by_jitter_within_half_to_full_backoff():
    assert backoff_s(3, base_s=0.5, cap_s=100.0, jitter=0.0) == 2.0
    assert backoff_s(3, base_s=0.5, cap_s=100.0, jitter=1.0) == 4.0
    assert backoff_s(30, base_s=0.5, cap_s=8.0, jitter=1.0) == 8.0


def test_retry_after_is_honoured_up_to_the_cap():
    send = Script(Reply(429, b"", "2"), Reply(429, b"", "120"), Reply(200, b"ok"))
    _, waits = run(send, retries=3, cap_s=10.0)
    assert waits == [2.0, 10.0]
    assert retry_after_seconds(formatdate(1_000_030.0, usegmt=True), now=1_000_000.0) == pytest.approx(30.0)
    assert retry_after_seconds("not a date") is None and retry_after_seconds(None) is None


def test_other_statuses_are_final_at_once():
    send = Script(Reply(422, b'{"error": "query[0]: empty"}'), Reply(200, b"never"))
    with pytest.raises(RetryError, match=r"rm\.test/get_reward answered 422: .*query\[0\]: empty") as err:
        run(send, retries=5)
    assert send.calls == 1 and err.value.status == 422


def test_unreachable_server_names_the_url_and_the_connection_error():
    send = Script(ConnectionRefusedError("[Errno 111] Connection refused"))
    with pytest.raises(RetryError, match="could not be reached .ConnectionRefusedError") as err:
        run(send, retries=2)
    assert send.calls == 3 and err.value.status is None and URL in str(err.value)


def test_exceptions_outside_transient_propagate():
    send = Script(ValueError("a bug, not a network failure"))
    with pytest.raises(ValueError):
        run(send, transient=(OSError,))
    assert send.calls == 1


# ---- both clients against a scripted local server --------------------------------------------------------------


@contextlib.contextmanager
def scripted_server(answers):
    """127.0.0.1 on a free port; the i-th POST gets answers[i] = (status, headers, JSON body); yields (url, log)."""
    log = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            log.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            status, headers, body = answers[min(len(log), len(answers)) - 1]
            data = json.dumps(body).encode()
            self.send_response(status)
            for k, v in {
                "Content-Type": "application/json",
                "Content-Length": str(len(data)),
                **headers,
            }.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()


BUSY = (429, {"Retry-After": "0"}, {"error": {"message": "body: server busy"}})


def test_http_scorer_retries_429_then_reads_the_answer():
    ok = (200, {}, {"results": [{"raw": 0.5}, {"raw": -1.0}]})
    sample = ref_sample(image=False)
    sample.responses.append("5")
    with scripted_server([BUSY, BUSY, ok]) as (url, log):
        assert HttpScorer(url, retries=3)([sample]) == [[0.5, -1.0]]
    assert len(log) == 3 and {path for path, _ in log} == {"/v1/reward"}
    assert log[0][1] == log[2][1]  # the same body every time


def test_http_scorer_gives_up_naming_the_url_and_status():
    with scripted_server([BUSY]) as (url, log):
        with pytest.raises(RetryError, match=f"{url}/v1/reward answered 429.*gave up after 3 attempts"):
            HttpScorer(url, retries=2)([ref_sample(image=False)])
    assert len(log) == 3


def test_openrlhf_post_retries_503_and_not_400():
    down = (503, {"Retry-After": "0"}, {"error": "warming up"})
    with scripted_server([down, (200, {}, {"rewards": [0.25]})]) as (url, log):
        assert openrlhf._post(url + "/get_reward", {"query": ["q"]}, timeout=5.0) == {"rewards": [0.25]}
    assert len(log) == 2
    with scripted_server([(400, {}, {"error": "bad"})]) as (url, log):
        with pytest.raises(RetryError, match="answered 400"):
            openrlhf._post(url + "/get_reward", {"query": ["q"]}, timeout=5.0)
    assert len(log) == 1


def test_openrlhf_post_to_a_closed_port_fails_with_the_url():
    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/get_reward"
        with pytest.raises(RetryError, match=f"{url} could not be reached.*gave up after 2 attempts"):
            openrlhf._post(url, {"query": ["q"]}, timeout=5.0, retries=1)
