"""One retry policy for every HTTP client of a reward server (`client.HttpScorer` on httpx, the OpenRLHF reward
file on urllib).

The server answers 429 (queue full, or a request waited past its timeout) with `Retry-After`, a proxy in front of
it may answer 503, and a server that is restarting refuses connections: those are retried with exponential backoff
(capped, with jitter so that the many rollout workers of an RL job do not retry in lockstep); any other status is
final at once. Standard library only: OpenRLHF loads `openrlhf.py` as a plain file in its own environment, where
this module must import without the server's dependencies (httpx, fastapi, torch).

    reply = with_retries(lambda: send_once(url, body), url, transient=(OSError,))
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({429, 503})


@dataclass
class Reply:
    """One HTTP answer, whatever client produced it."""

    status: int
    body: bytes
    retry_after: str | None = None  # the raw `Retry-After` header: seconds or an HTTP date


class RetryError(RuntimeError):
    """No usable answer from `url`: a final error status, or retries exhausted. `status` is the last HTTP status
    (None when the last attempt failed to connect)."""

    def __init__(self, message: str, url: str, status: int | None):
        super().__init__(message)
        self.url, self.status = url, status


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def backoff_s(attempt: int, base_s: float, cap_s: float, jitter: float) -> float:
    """Wait before retry number `attempt + 1`: base * 2^attempt, at most cap_s, scaled into [1/2, 1] by `jitter`
    (a draw from [0, 1]) so that workers that failed together spread out."""
    return min(cap_s, base_s * 2.0**attempt) * (0.5 + 0.5 * jitter)


def with_retries(
    send: Callable[[], Reply],
    url: str,
    *,
    retries: int = 5,
    base_s: float = 0.5,
    cap_s: float = 10.0,
    transient: tuple[type[BaseException], ...] = (OSError,),
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> Reply:
    """Call `send` until it answers 2xx (returned), for at most `retries + 1` attempts. A 429/503 or an exception
    in `transient` (connection refused, reset, timed out) is retried after `Retry-After` when the server gave one,
    else the backoff; no wait exceeds `cap_s`. Anything else, or the last failure, raises `RetryError` naming
    the URL and the last status."""
    status: int | None = None
    detail = ""
    for attempt in range(retries + 1):
        try:
            reply = send()
        except transient as e:
            status, detail, wait = None, f"{type(e).__name__}: {e}", None
        else:
            if 200 <= reply.status < 300:
                return reply
            status, detail = reply.status, reply.body[:500].decode("utf-8", "replace")
            if status not in RETRY_STATUSES:
                raise RetryError(f"reward server {url} answered {status}: {detail}", url, status)
            wait = retry_after_seconds(reply.retry_after)
        if attempt == retries:
            break
        sleep(min(cap_s, wait) if wait is not None else backoff_s(attempt, base_s, cap_s, jitter()))
    last = f"answered {status}: {detail}" if status is not None else f"could not be reached ({detail})"
    raise RetryError(f"reward server {url} {last}; gave up after {retries + 1} attempts", url, status)
