"""Cross-request dynamic batching: a queue of already-encoded jobs drained by one worker thread.

RL clients send one small request per rollout (OpenRLHF >= 0.10, verl's reward loop), so scoring each request on
its own runs the accelerator at batch size 1. Here every request becomes a `Job` (its encoded samples); the worker
takes the oldest job, keeps taking jobs until `max_batch_size` sequences or `max_batch_tokens` tokens are gathered
or the oldest job has waited `max_wait_ms`, and scores them together. Jobs that arrived while the previous batch ran
are taken at once (their wait already counts), so under load batches fill without extra delay.

Within a batch, samples sharing a key (a GRPO group, or the same prompt + images) are placed side by side, and
adjacent samples whose prompt encodings are identical are merged into one sample with all their responses: the
prefix-shared layout then runs that prompt and its images through the model once. When a batch needs several
forwards, the groups are bucketed by token length first (similar lengths share a forward, so rows pad less). Each
reward equals scoring that sample alone (to float rounding: batching pads rows, sharing changes no attention).

A failing forward is bisected: each half is retried, a half that succeeds answers its samples, and a failing half is
split again until the failing sample is alone, where its exception becomes its request's error (the service maps
the type: a `DataError` is the client's fault). One bad sample among N then costs about 2*log2(N) extra forwards
instead of N serial ones (an out-of-memory batch would otherwise become N forwards at batch size 1); the worst case,
every sample failing, is 2N-1 forwards.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from basereward.template import EncodedSample, PromptEncoding

ForwardFn = Callable[[Sequence[EncodedSample]], list[list[float]]]
_STOP = object()


class QueueFull(RuntimeError):
    """The server has `max_queue` jobs waiting; the client should retry later (HTTP 429)."""


@dataclass
class Job:
    encoded: list[EncodedSample]
    keys: list[str]  # one per sample: samples with equal keys are scored side by side
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def rows(self) -> int:
        return sum(len(e.responses) for e in self.encoded)

    @property
    def tokens(self) -> int:
        return sum(sample_tokens(e) for e in self.encoded)


@dataclass
class JobResult:
    rewards: list[list[float]]  # per sample, per response, in the job's order
    queue_ms: float  # enqueue -> its batch starts
    forward_ms: float  # forward time of the batch chunks that held its samples
    batch_rows: list[int]  # size (sequences) of each forward it rode in


class DynamicBatcher:
    """`submit(encoded, keys) -> Future[JobResult]`; thread-safe. `forward` runs only on the worker thread."""

    def __init__(
        self,
        forward: ForwardFn,
        *,
        max_batch_size: int = 32,
        max_batch_tokens: int | None = None,
        max_wait_ms: float = 5.0,
        max_queue: int = 4096,
        on_batch: Callable[[int, float, float], None] | None = None,
    ):
        if max_batch_size < 1 or (max_batch_tokens is not None and max_batch_tokens < 1):
            raise ValueError("max_batch_size and max_batch_tokens must be >= 1")
        self.forward = forward
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens or float("inf")  # a sample over the budget still runs, alone
        self.max_wait_s = max(0.0, max_wait_ms) / 1000.0
        self.on_batch = on_batch  # (rows, forward seconds, oldest queue wait seconds), for metrics
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="basereward-batcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._q.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def qsize(self) -> int:
        return self._q.qsize()

    def submit(self, encoded: list[EncodedSample], keys: list[str]) -> Future:
        job = Job(list(encoded), list(keys))
        try:
            self._q.put_nowait(job)
        except queue.Full as e:
            raise QueueFull(f"{self._q.maxsize} requests already queued") from e
        return job.future

    # ---- worker --------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            jobs, stop = self._collect()
            if jobs:
                self._process(jobs)
            if stop:
                return

    def _collect(self) -> tuple[list[Job], bool]:
        first = self._q.get()
        if first is _STOP:
            return [], True
        jobs, rows, tokens = [first], first.rows, first.tokens
        deadline = first.enqueued + self.max_wait_s
        while rows < self.max_batch_size and tokens < self.max_batch_tokens:
            left = deadline - time.monotonic()
            try:
                job = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return jobs, True
            jobs.append(job)
            rows += job.rows
            tokens += job.tokens
        return jobs, False

    def _process(self, jobs: list[Job]) -> None:
        # A job whose client gave up (timeout) was cancelled: skip it.
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        start = time.monotonic()
        forward_s = [0.0] * len(live)
        rows_seen: list[list[int]] = [[] for _ in live]
        rewards: list[list[list[float] | None]] = [[None] * len(j.encoded) for j in live]
        pending = [len(j.encoded) for j in live]  # a job is answered as soon as its last sample is scored
        failures: dict[int, BaseException] = {}
        for chunk in self._chunks(self._grouped(live), live):
            enc = [live[j].encoded[s] for j, s in chunk]
            rows = sum(len(e.responses) for e in enc)
            t0 = time.monotonic()
            out = self._isolating(enc)
            dt = time.monotonic() - t0
            for (j, s), r in zip(chunk, out):
                if isinstance(r, BaseException):
                    failures.setdefault(j, r)
                else:
                    rewards[j][s] = r
                pending[j] -= 1
            for j in dict.fromkeys(j for j, _ in chunk):
                forward_s[j] += dt
                rows_seen[j].append(rows)
                if pending[j] == 0:
                    job = live[j]
                    if j in failures:
                        job.future.set_exception(failures[j])
                    else:
                        job.future.set_result(
                            JobResult(
                                rewards[j], (start - job.enqueued) * 1000, forward_s[j] * 1000, rows_seen[j]
                            )
                        )
            if self.on_batch is not None:
                self.on_batch(rows, dt, start - min(job.enqueued for job in live))

    def _isolating(self, enc: list[EncodedSample]) -> list[list[float] | BaseException]:
        """Rewards per sample; a sample that fails alone gets its exception instead. On failure, retry each half
        (bisection), so samples that do not share a forward with the bad one are still scored, in O(log N) forwards."""
        try:
            return list(self._forward_merged(enc))
        except Exception as err:  # noqa: BLE001 - reported to the failing sample's request below
            if _is_oom(err):
                torch.cuda.empty_cache()  # the halves need the memory the failed batch left cached
            if len(enc) == 1:
                return [err]
        mid = len(enc) // 2
        return self._isolating(enc[:mid]) + self._isolating(enc[mid:])

    def _forward_merged(self, enc: list[EncodedSample]) -> list[list[float]]:
        """Adjacent samples with an identical prompt encoding (same ids and pixels: the same prompt and images from
        different requests) become one sample with all their responses, so the prefix-shared layout encodes that
        prompt and its images once. Rewards are split back per sample."""
        merged: list[EncodedSample] = []
        spans: list[tuple[int, int, int]] = []  # per input sample: (merged index, first response, count)
        for e in enc:
            if merged and same_prompt(merged[-1].prompt, e.prompt):
                m = merged[-1]
                spans.append((len(merged) - 1, len(m.responses), len(e.responses)))
                m.responses = m.responses + e.responses
            else:
                merged.append(EncodedSample(e.prompt, list(e.responses), e.id))
                spans.append((len(merged) - 1, 0, len(e.responses)))
        out = self.forward(merged)
        return [out[m][a : a + n] for m, a, n in spans]

    def _grouped(self, jobs: list[Job]) -> list[tuple[int, int]]:
        """(job, sample) pairs, samples with one key adjacent, keys in first-seen order; when the batch takes more
        than one forward, groups are ordered by their longest sample instead (stable), so lengths bucket."""
        by_key: dict[str, list[tuple[int, int]]] = {}
        for j, job in enumerate(jobs):
            for s, key in enumerate(job.keys):
                by_key.setdefault(key, []).append((j, s))
        groups = list(by_key.values())
        rows = sum(job.rows for job in jobs)
        if rows > self.max_batch_size or sum(job.tokens for job in jobs) > self.max_batch_tokens:
            groups.sort(key=lambda g: max(sample_tokens(jobs[j].encoded[s]) for j, s in g))
        return [item for members in groups for item in members]

    def _chunks(self, order: list[tuple[int, int]], jobs: list[Job]) -> list[list[tuple[int, int]]]:
        """Consecutive runs of at most max_batch_size sequences and max_batch_tokens tokens; a sample is never
        split."""
        chunks: list[list[tuple[int, int]]] = []
        cur: list[tuple[int, int]] = []
        rows = tokens = 0
        for j, s in order:
            e = jobs[j].encoded[s]
            n, t = len(e.responses), sample_tokens(e)
            if cur and (rows + n > self.max_batch_size or tokens + t > self.max_batch_tokens):
                chunks.append(cur)
                cur, rows, tokens = [], 0, 0
            cur.append((j, s))
            rows += n
            tokens += t
        if cur:
            chunks.append(cur)
        return chunks


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) and torch.cuda.is_available()


def sample_tokens(e: EncodedSample) -> int:
    """Tokens the sample adds to a prefix-shared forward: its prompt once plus every response."""
    return len(e.prompt.input_ids) + sum(len(r) for r in e.responses)


def same_prompt(a: PromptEncoding, b: PromptEncoding) -> bool:
    """Identical model inputs for the prompt part (token ids, token types, every vision tensor)."""
    if a is b:
        return True
    if a.input_ids != b.input_ids or a.mm_token_type_ids != b.mm_token_type_ids:
        return False
    for name in (
        "pixel_values",
        "image_grid_thw",
        "pixel_values_videos",
        "video_grid_thw",
        "second_per_grid_ts",
    ):
        x, y = getattr(a, name), getattr(b, name)
        if (x is None) != (y is None) or (x is not None and not torch.equal(x, y)):
            return False
    return True
