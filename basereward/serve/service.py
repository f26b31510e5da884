"""The server's scoring service: parsed samples -> encoded (the one preprocessing path) -> batched forward -> raw
rewards. Every route calls `RewardService.score`; it owns the limits that are about scoring (tokens per sequence,
samples per request, queue size and bytes, request deadline) and turns every failure a request can cause into a
`RequestError`/`BadRequest` (HTTP 4xx), never a crash.

Memory under load is bounded by bytes, not only by counts: every request holds a `Ticket` on the service's
`ByteBudget` (`--max-queue-mb`) for its body while it is read and handled (errors.BodyGuard) and for its images and
encodings while they wait for and ride in a batch; a request that would take the budget over its capacity is answered 429
(`Busy`). A request alone in the budget is always admitted (its size is bounded by `--max-body-mb` and the image
limits), so an oversized budget setting can never refuse every request.

Models: one reward model or several (docs/server-api.md §5.3 "Multi-RM"), held as one `EnsembleScorer`
(basereward/ensemble.py: the combination arithmetic and the routing rule; one model is an ensemble of one). Each
member has its own encoder, prompt cache and batcher, so each keeps its training-time template and batches on its
own; the service gathers their rewards for `EnsembleScorer.reduce` / `reduce_text`.

Threads: request conversion and encoding run on a small preprocessing pool (image decoding is CPU work and must not
block the event loop); each tokenizer/processor is entered by one thread at a time; a model runs only on its
batcher's worker thread. Each member's encoder keeps a small LRU of prompt encodings (`Encoder(prompt_cache=N)`,
keyed by `Sample.prompt_key()`), so the rollouts of a GRPO group, which arrive as separate requests, share one image
decode and one prompt encoding.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from basereward.ensemble import ENSEMBLE_FILE, EnsembleScorer, served_ensemble
from basereward.scoring import RewardScorer, model_device
from basereward.serve.batcher import DynamicBatcher, JobResult, QueueFull
from basereward.serve.media import MediaPolicy, MediaRegistry, RequestError, ref_bytes
from basereward.serve.metrics import Metrics
from basereward.serve.parse import BadRequest, Parsed
from basereward.template import EncodedSample
from basereward.types import DataError, Sample


class Busy(RuntimeError):
    """The queue is full (by count or bytes): retry later (HTTP 429)."""


class ScoringFailed(RuntimeError):
    """The model failed on this request's own samples for a reason that is not the client's (an out-of-memory, a
    bug): HTTP 500 naming the field. A client mistake found only at scoring time (a DataError) is a 422 instead.
    The batcher has already isolated the failing sample, so the other requests of its batch were answered."""

    def __init__(self, field: str, detail: str):
        super().__init__(detail)
        self.field, self.detail = field, detail


class Overdue(RuntimeError):
    """The request was not scored by its deadline (`--request-timeout-s`); it was dropped unscored if it had not
    reached a batch yet: retry later (HTTP 503)."""


class ByteBudget:
    """Bytes held by requests in flight, against a capacity (None: unbounded). Thread-safe."""

    def __init__(self, capacity: int | None):
        self.capacity = capacity
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int, own: int = 0) -> bool:
        """Reserve `n` bytes for a holder that already has `own`; False (nothing reserved) when that would pass the
        capacity while other holders hold bytes too."""
        with self._lock:
            if self.capacity is not None and self.used > own and self.used + n > self.capacity:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


class Ticket:
    """One request's share of a `ByteBudget`; `close()` returns all of it."""

    def __init__(self, budget: ByteBudget):
        self.budget, self.held = budget, 0

    def take(self, n: int) -> bool:
        if not self.budget.take(n, self.held):
            return False
        self.held += n
        return True

    def give(self, n: int) -> None:
        n = min(n, self.held)
        self.held -= n
        self.budget.give(n)

    def close(self) -> None:
        self.give(self.held)


# The ticket of the request being handled, set by errors.BodyGuard (pure ASGI middleware: the route runs in the
# same task, so it sees it); a service called without the middleware makes its own.
current_ticket: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar(
    "basereward_ticket", default=None
)


@dataclass
class Scored:
    parsed: list[Parsed]
    raw: list[float]  # one per parsed sample (the ensemble's combination when several models score it)
    normalized: list[float]  # the same, on the checkpoints' calibrated scales
    tokens: list[int]  # sequence length of each (the longest over the models that scored it)
    timing: dict[str, float]  # queue_ms, preprocess_ms, forward_ms


class Member:
    """One served reward model: its scorer (whose encoder caches prompt encodings) and its dynamic batcher."""

    def __init__(
        self,
        scorer: RewardScorer,
        model_dir: str | Path,
        role: str,
        *,
        policy: MediaPolicy,
        max_batch_size: int,
        max_batch_tokens: int | None,
        max_wait_ms: float,
        max_queue: int,
        max_tokens: int | None,
        prompt_cache_size: int,
        metrics: Metrics,
        weight: float | None = None,
    ):
        self.scorer = scorer
        self.model_dir = Path(model_dir)
        self.role = role  # "main", "ensemble" or "text"
        self.weight = weight  # its weight in the ensemble (None: the text RM, which is not combined)
        # The decompression-bomb guard of the one preprocessing path doubles as the server's pixel limit.
        scorer.encoder.max_source_pixels = policy.max_image_pixels
        self.max_tokens = min(max_tokens or 1 << 62, max_positions(scorer.model))
        self.max_batch_size = max_batch_size
        self.batcher = DynamicBatcher(
            self._forward,
            max_batch_size=max_batch_size,
            max_batch_tokens=max_batch_tokens,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            on_batch=metrics.record_batch,
        )
        scorer.encoder.prompt_cache = prompt_cache_size  # see the module docstring (GRPO groups)
        self.revision = checkpoint_revision(self.model_dir)

    def _forward(self, encoded: list[EncodedSample]) -> list[list[float]]:
        # the batcher already bounded the batch; a forward holds at most max_batch_size responses
        return self.scorer.score_encoded(encoded, max_rows=max(self.max_batch_size, 1))

    def describe(self) -> dict:
        m = self.scorer.model
        return {
            "role": self.role,
            "model": str(self.model_dir),
            "revision": self.revision,
            "model_type": m.model_type,
            "reward_stats": m.reward_stats,
            "weight": self.weight,
        }


@dataclass
class _Work:
    """What one member scores for one request: its encodings and the request's sample index of each."""

    member: Member
    encoded: list[EncodedSample]
    keys: list[str]
    index: list[int]


class RewardService:
    """`scorer`: one RewardScorer (+ the `ensemble` / `text_scorer` of the flags), or an EnsembleScorer."""

    def __init__(
        self,
        scorer: RewardScorer | EnsembleScorer,
        *,
        model_dir: str | Path,
        model_name: str | None = None,
        ensemble: Sequence[tuple[RewardScorer, str | Path]] = (),
        text_scorer: tuple[RewardScorer, str | Path] | None = None,
        policy: MediaPolicy = MediaPolicy(),
        max_batch_size: int = 32,
        max_batch_tokens: int | None = None,
        max_wait_ms: float = 5.0,
        max_tokens: int | None = None,
        max_samples: int = 1024,
        max_queue: int = 4096,
        max_queue_bytes: int | None = 1024 * 1024 * 1024,
        media_cache_bytes: int | None = 1024 * 1024 * 1024,
        request_timeout_s: float = 150.0,
        preprocess_threads: int = 2,
        prompt_cache_size: int = 64,
        metrics: Metrics | None = None,
    ):
        self.model_dir = Path(model_dir)
        self.model_name = model_name or str(model_dir)
        self.policy = policy
        self.max_samples = max_samples
        self.request_timeout_s = request_timeout_s  # below OpenRLHF's 180 s client timeout
        self.metrics = metrics or Metrics()
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_ms = max_wait_ms
        common = dict(
            policy=policy,
            max_batch_size=max_batch_size,
            max_batch_tokens=max_batch_tokens,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            max_tokens=max_tokens,
            prompt_cache_size=prompt_cache_size,
            metrics=self.metrics,
        )
        self.ensemble = served_ensemble(scorer, model_dir, ensemble, text_scorer)
        ens = self.ensemble
        self.members = [
            Member(s, d, "main" if i == 0 else "ensemble", weight=w, **common)
            for i, (s, d, w) in enumerate(zip(ens.members, ens.member_dirs, ens.weights))
        ]
        self.text_member = (
            Member(ens.text_scorer, ens.text_dir, "text", **common) if ens.text_scorer is not None else None
        )
        main = self.members[0]
        self.scorer = main.scorer  # the main model: its tokenizer defines the text routes' special tokens
        self.max_tokens = main.max_tokens
        self._pool = ThreadPoolExecutor(preprocess_threads, thread_name_prefix="basereward-preprocess")
        # The served reward changes when any member's does, or the ensemble's weights and normalisation.
        revisions = [m.revision for m in self.all_members]
        if ens.directory is not None:
            revisions.append(hashlib.sha256((ens.directory / ENSEMBLE_FILE).read_bytes()).hexdigest()[:12])
        combined = hashlib.sha256("|".join(revisions).encode()).hexdigest()[:12]
        self.revision = revisions[0] if len(revisions) == 1 else combined
        # uid -> images registered with POST /v1/media
        self.media = MediaRegistry(max_bytes=media_cache_bytes)
        self.queue_budget = ByteBudget(max_queue_bytes)

    @property
    def all_members(self) -> list[Member]:
        return self.members + ([self.text_member] if self.text_member is not None else [])

    def start(self) -> None:
        for m in self.all_members:
            m.batcher.start()

    def stop(self) -> None:
        for m in self.all_members:
            m.batcher.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def device(self) -> str:
        return str(model_device(self.scorer.model))

    @property
    def dtype(self) -> str:
        return "bf16-autocast" if self.scorer.autocast_dtype is not None else "fp32"

    def route(self, sample: Sample) -> list[Member]:
        """The models that score this sample (the ensemble's routing rule)."""
        return [self.text_member] if self.ensemble.routes_to_text(sample) else self.members

    async def score(self, parse: Callable[[], list[Parsed]], route: str) -> Scored:
        """Run `parse` (request -> Parsed samples) and the encoders off the event loop, then wait for the batches."""
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        parsed, work, tokens = await loop.run_in_executor(self._pool, self._prepare, parse)
        preprocess_ms = (time.monotonic() - t0) * 1000
        ticket = current_ticket.get()
        own_ticket = ticket is None
        ticket = Ticket(self.queue_budget) if own_ticket else ticket
        # What the request holds while it waits, beyond its body (counted by the middleware): the images' encoded
        # bytes its samples keep and the encodings.
        cost = sum(sample_bytes(p.sample) for p in parsed)
        cost += sum(encoded_bytes(e) for w in work for e in w.encoded)
        if not ticket.take(cost):
            if own_ticket:
                ticket.close()
            b = self.queue_budget
            raise Busy(
                f"{b.used} bytes of requests already queued, the budget is {b.capacity} (--max-queue-mb)"
            )
        futures = []
        try:
            try:
                for w in work:
                    futures.append(w.member.batcher.submit(w.encoded, w.keys))
            except QueueFull as e:
                raise Busy(str(e)) from e
            # The deadline runs from arrival at the service: preprocessing counts against it too.
            left = self.request_timeout_s - (time.monotonic() - t0)
            try:
                results: list[JobResult] = await asyncio.wait_for(
                    asyncio.gather(*(asyncio.wrap_future(f) for f in futures)), max(left, 0.0)
                )
            except asyncio.TimeoutError as e:
                raise Overdue(f"not scored within {self.request_timeout_s:g} s") from e
            except Exception as e:  # noqa: BLE001 - the forward failed on this request's own samples
                field = parsed[0].field if len(parsed) == 1 else "body"
                why = f"could not be scored: {type(e).__name__}: {e}"
                if isinstance(e, DataError):
                    raise BadRequest([RequestError(field, why)]) from e
                raise ScoringFailed(field, why) from e
        finally:
            # A job that has not reached a batch yet is dropped unscored (the batcher skips cancelled futures); one
            # already in a forward cannot be stopped and its result is discarded. Either way its share of the budget
            # is returned now (a skipped job's encodings are freed when the worker pops it).
            for f in futures:
                f.cancel()
            if own_ticket:
                ticket.close()
            else:
                ticket.give(cost)
        self.metrics.record_samples(route, len(parsed))
        # got[i][member] = [reward]: each parsed sample holds one response
        got: list[dict[Member, list[float]]] = [{} for _ in parsed]
        for w, result in zip(work, results):
            for i, r in zip(w.index, result.rewards):
                got[i][w.member] = r
        raws, norms = [], []
        for g in got:
            if self.text_member in g:
                raw, norm = self.ensemble.reduce_text(g[self.text_member])
            else:
                raw, norm = self.ensemble.reduce([g[m] for m in self.members])
            raws.append(raw[0])
            norms.append(norm[0])
        timing = {
            "queue_ms": max((r.queue_ms for r in results), default=0.0),
            "preprocess_ms": preprocess_ms,
            "forward_ms": max((r.forward_ms for r in results), default=0.0),
        }
        return Scored(parsed, raws, norms, tokens, timing)

    def _prepare(self, parse: Callable[[], list[Parsed]]):
        parsed = parse()
        if len(parsed) > self.max_samples:
            raise BadRequest(
                [RequestError("body", f"{len(parsed)} samples, over the limit of {self.max_samples}")]
            )
        work: dict[int, _Work] = {}
        tokens, errors = [], []
        for i, p in enumerate(parsed):
            key = p.sample.prompt_key()
            longest = 0
            for member in self.route(p.sample):
                try:
                    enc = member.scorer.encode(p.sample)
                except DataError as e:  # corrupt image, over the pixel limit, empty response...
                    errors.append(e if isinstance(e, RequestError) else _located(p.field, str(e)))
                    break
                n = len(enc.prompt.input_ids) + max(len(r) for r in enc.responses)
                if n > member.max_tokens:
                    errors.append(
                        RequestError(p.field, f"input is {n} tokens, over the limit of {member.max_tokens}")
                    )
                    break
                w = work.setdefault(id(member), _Work(member, [], [], []))
                w.encoded.append(enc)
                w.keys.append(p.group or key or f"unkeyed-{id(p)}")
                w.index.append(i)
                longest = max(longest, n)
            tokens.append(longest)
        if errors:
            raise BadRequest(errors)
        return parsed, list(work.values()), tokens


def sample_bytes(s: Sample) -> int:
    """Bytes of the images a parsed sample keeps (data URIs decoded; a path counts a few hundred bytes)."""
    return sum(ref_bytes(r) for r in s.images) + sum(ref_bytes(r) for v in s.videos for r in v.frames)


def encoded_bytes(e: EncodedSample) -> int:
    """Memory one queued encoding holds: its vision tensors and (as Python ints, ~32 bytes each) its token ids."""
    p = e.prompt
    n = 32 * (len(p.input_ids) + sum(len(r) for r in e.responses))
    for t in (p.pixel_values, p.pixel_values_videos):
        if t is not None:
            n += t.numel() * t.element_size()
    return n


def _located(field: str, message: str) -> RequestError:
    """An encoder error names the most precise field it knows (an image's `where`, inside `field`): keep it."""
    where, sep, rest = message.partition(": ")
    if sep and where.startswith(field):
        return RequestError(where, rest)
    return RequestError(field, message)


def max_positions(model) -> int:
    cfg = model.backbone.config
    text = getattr(cfg, "text_config", None) or cfg
    return int(getattr(text, "max_position_embeddings", None) or 32768)


def checkpoint_revision(model_dir: Path) -> str:
    """A short hash of the head weights and basereward.json: it changes whenever the served reward can change
    (the backbone is not hashed: a 7B model's weights would take seconds to read)."""
    h = hashlib.sha256()
    for name in ("basereward.json", "head.safetensors"):
        p = model_dir / name
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:12]
