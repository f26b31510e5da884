"""The server's Prometheus metrics (prometheus_client), exposed by `GET /metrics`.

Requests by route and status code, samples scored, request latency, model forwards and their size in sequences
(the proof that single-sample requests were batched), forward time and queue wait, plus gauges read at scrape
time: queue depth, the configured batch limits, and the two memory budgets, each as bytes in use next to its
capacity (the requests in flight against `--max-queue-mb`, the `POST /v1/media` registry against
`--media-cache-mb`), so an operator sees how close the server is to answering 429 or to evicting registered images.

Every `Metrics` owns its own `CollectorRegistry` rather than prometheus_client's process-wide default: two apps in
one process (the tests, a benchmark comparing two configurations) would otherwise collide on metric names, and
each app's `/metrics` must show only its own traffic.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# The classic text format (what generate_latest writes): every Prometheus version and scraper reads it, while the
# library's CONTENT_TYPE_LATEST announces 1.0.0, which older scrapers do not know.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class Metrics:
    """Everything `/metrics` shows. The `record_*` methods may be called from any thread (the batcher's worker
    records forwards); prometheus_client's metrics are thread-safe."""

    def __init__(self):
        self.registry = CollectorRegistry()
        reg = self.registry
        # Counter names are given without `_total`: prometheus_client appends it to the exposed sample.
        self.requests = Counter(
            "basereward_requests", "HTTP requests by route and status code", ("route", "code"), registry=reg
        )
        self.samples = Counter("basereward_samples", "samples scored, by route", ("route",), registry=reg)
        self.latency = Histogram(
            "basereward_request_latency_seconds",
            "request latency, arrival to response",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.batches = Counter("basereward_batches", "model forwards run by the batcher", registry=reg)
        self.batch_size = Histogram(
            "basereward_batch_size", "sequences per model forward", buckets=BATCH_BUCKETS, registry=reg
        )
        self.forward = Histogram(
            "basereward_forward_seconds", "time of one model forward", buckets=LATENCY_BUCKETS, registry=reg
        )
        self.queue_wait = Histogram(
            "basereward_queue_wait_seconds",
            "oldest job's wait before its batch ran",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.queue_depth = Gauge("basereward_queue_depth", "requests waiting for the batchers", registry=reg)
        self.max_batch_size = Gauge(
            "basereward_max_batch_size", "configured max sequences per forward", registry=reg
        )
        self.max_batch_tokens = Gauge(
            "basereward_max_batch_tokens", "configured max tokens per forward (0: none)", registry=reg
        )
        self.queue_bytes = Gauge(
            "basereward_queue_bytes",
            "bytes held by the requests in flight: bodies, decoded images, encodings",
            registry=reg,
        )
        self.queue_budget_bytes = Gauge(
            "basereward_queue_budget_bytes", "configured --max-queue-mb in bytes (0: unbounded)", registry=reg
        )
        self.media_cache_bytes = Gauge(
            "basereward_media_cache_bytes",
            "bytes of images held by the POST /v1/media registry",
            registry=reg,
        )
        self.media_cache_budget_bytes = Gauge(
            "basereward_media_cache_budget_bytes",
            "configured --media-cache-mb in bytes (0: unbounded)",
            registry=reg,
        )
        self.media_cache_entries = Gauge(
            "basereward_media_cache_entries", "uids registered with POST /v1/media", registry=reg
        )

    def record_request(self, route: str, code: int, seconds: float) -> None:
        self.requests.labels(route, str(code)).inc()
        self.latency.labels(route).observe(seconds)

    def record_samples(self, route: str, n: int) -> None:
        self.samples.labels(route).inc(n)

    def record_batch(self, rows: int, forward_s: float, wait_s: float) -> None:
        self.batches.inc()
        self.batch_size.observe(rows)
        self.forward.observe(forward_s)
        self.queue_wait.observe(wait_s)

    def watch(
        self,
        queue_depth: Callable[[], float],
        max_batch_size: int,
        max_batch_tokens: int | None,
        *,
        queue_bytes: Callable[[], float] = lambda: 0,
        queue_budget_bytes: int | None = None,
        media_cache_bytes: Callable[[], float] = lambda: 0,
        media_cache_budget_bytes: int | None = None,
        media_cache_entries: Callable[[], float] = lambda: 0,
    ) -> None:
        """Gauges of a server: what is in use (depth, bytes, entries) is read when scraped, so it is never stale;
        the limits are fixed at start-up (a budget of None, unbounded, shows as 0)."""
        self.queue_depth.set_function(queue_depth)
        self.max_batch_size.set(max_batch_size)
        self.max_batch_tokens.set(max_batch_tokens or 0)
        self.queue_bytes.set_function(queue_bytes)
        self.queue_budget_bytes.set(queue_budget_bytes or 0)
        self.media_cache_bytes.set_function(media_cache_bytes)
        self.media_cache_budget_bytes.set(media_cache_budget_bytes or 0)
        self.media_cache_entries.set_function(media_cache_entries)

    def render(self) -> bytes:
        """The text exposition format of everything registered (serve it with `CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    def total(self, name: str) -> float:
        """A counter's value summed over its labels, e.g. `total("basereward_requests")` (the run summary)."""
        return sum(
            s.value
            for family in self.registry.collect()
            if family.name == name
            for s in family.samples
            if s.name == name + "_total"
        )
