"""The server's Prometheus metrics, rendered as the text exposition format for `GET /metrics`.

Counters and histograms are kept in plain dicts under one lock (no prometheus_client dependency): requests by route
and status code, samples scored, request latency, model forwards and their size in sequences (the proof that
single-sample requests were batched), forward time and queue wait.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{v}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Counter:
    def __init__(self, name: str, help_: str, labels: Sequence[str] = ()):
        self.name, self.help, self.label_names = name, help_, tuple(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, by: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + by

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        out += [f"{self.name}{_labels(self.label_names, k)} {v:g}" for k, v in sorted(self.values.items())]
        return out


class Histogram:
    def __init__(self, name: str, help_: str, buckets: Sequence[float], labels: Sequence[str] = ()):
        self.name, self.help, self.label_names = name, help_, tuple(labels)
        self.buckets = tuple(buckets)
        self.series: dict[tuple[str, ...], list[float]] = {}  # bucket counts..., +Inf count, sum

    def observe(self, value: float, *labels: str) -> None:
        s = self.series.setdefault(labels, [0.0] * (len(self.buckets) + 2))
        for i, b in enumerate(self.buckets):
            if value <= b:
                s[i] += 1
        s[-2] += 1
        s[-1] += value

    def count(self, *labels: str) -> int:
        return int(self.series.get(labels, [0.0, 0.0])[-2])

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for k, s in sorted(self.series.items()):
            for b, c in [*zip((f"{b:g}" for b in self.buckets), s), ("+Inf", s[-2])]:
                le = 'le="' + b + '"'
                out.append(f"{self.name}_bucket{_labels(self.label_names, k, le)} {c:g}")
            out.append(f"{self.name}_sum{_labels(self.label_names, k)} {s[-1]:.6g}")
            out.append(f"{self.name}_count{_labels(self.label_names, k)} {s[-2]:g}")
        return out


class Metrics:
    """Everything `/metrics` shows. Call the `record_*` methods from any thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = Counter(
            "basereward_requests_total", "HTTP requests by route and status code", ("route", "code")
        )
        self.samples = Counter("basereward_samples_total", "samples scored, by route", ("route",))
        self.latency = Histogram(
            "basereward_request_latency_seconds",
            "request latency, arrival to response",
            LATENCY_BUCKETS,
            ("route",),
        )
        self.batches = Counter("basereward_batches_total", "model forwards run by the batcher")
        self.batch_size = Histogram("basereward_batch_size", "sequences per model forward", BATCH_BUCKETS)
        self.forward = Histogram("basereward_forward_seconds", "time of one model forward", LATENCY_BUCKETS)
        self.queue_wait = Histogram(
            "basereward_queue_wait_seconds", "oldest job's wait before its batch ran", LATENCY_BUCKETS
        )

    def record_request(self, route: str, code: int, seconds: float) -> None:
        with self.lock:
            self.requests.inc(route, str(code))
            self.latency.observe(seconds, route)

    def record_samples(self, route: str, n: int) -> None:
        with self.lock:
            self.samples.inc(route, by=n)

    def record_batch(self, rows: int, forward_s: float, wait_s: float) -> None:
        with self.lock:
            self.batches.inc()
            self.batch_size.observe(rows)
            self.forward.observe(forward_s)
            self.queue_wait.observe(wait_s)

    def render(self, gauges: dict[str, tuple[str, float]] | None = None) -> str:
        """Text exposition format; `gauges` maps name -> (help, value) for values read at scrape time."""
        with self.lock:
            lines: list[str] = []
            for m in (
                self.requests,
                self.samples,
                self.latency,
                self.batches,
                self.batch_size,
                self.forward,
                self.queue_wait,
            ):
                lines += m.render()
        for name, (help_, value) in (gauges or {}).items():
            v = "NaN" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:g}"
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name} {v}"]
        return "\n".join(lines) + "\n"
