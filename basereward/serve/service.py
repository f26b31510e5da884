"""The server's scoring service: parsed samples -> encoded (the one preprocessing path) -> batched forward -> raw
rewards. Every route calls `RewardService.score`; it owns the limits that are about scoring (tokens per sequence,
samples per request, queue size, request timeout) and turns every failure a request can cause into a
`RequestError`/`BadRequest` (HTTP 4xx), never a crash.

Threads: request conversion and encoding run on a small preprocessing pool (image decoding is CPU work and must not
block the event loop); the tokenizer/processor is entered by one thread at a time; the model runs only on the
batcher's worker thread. A small LRU of prompt encodings (keyed by prompt text + image bytes) lets the rollouts of a
GRPO group, which arrive as separate requests, share one image decode and one prompt encoding.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from basereward.scoring import RewardScorer, model_device, score_encoded
from basereward.serve.batcher import DynamicBatcher, QueueFull
from basereward.serve.media import MediaPolicy, MediaRegistry, RequestError
from basereward.serve.metrics import Metrics
from basereward.serve.parse import BadRequest, Parsed
from basereward.template import EncodedSample, PromptEncoding
from basereward.types import DataError, Sample


class Busy(RuntimeError):
    """The queue is full or the request waited past its timeout: retry later (HTTP 429)."""


@dataclass
class Scored:
    parsed: list[Parsed]
    raw: list[float]  # one per parsed sample
    tokens: list[int]  # sequence length of each
    timing: dict[str, float]  # queue_ms, preprocess_ms, forward_ms


class RewardService:
    def __init__(self, scorer: RewardScorer, *, model_dir: str | Path, model_name: str | None = None,
                 policy: MediaPolicy = MediaPolicy(), max_batch_size: int = 32, max_batch_tokens: int | None = None,
                 max_wait_ms: float = 5.0,
                 max_tokens: int | None = None, max_samples: int = 1024, max_queue: int = 4096,
                 request_timeout_s: float = 150.0, preprocess_threads: int = 2, prompt_cache_size: int = 64,
                 metrics: Metrics | None = None):  # fmt: skip
        self.scorer = scorer
        self.model_dir = Path(model_dir)
        self.model_name = model_name or str(model_dir)
        self.policy = policy
        # The decompression-bomb guard of the one preprocessing path doubles as the server's pixel limit.
        scorer.encoder.max_source_pixels = policy.max_image_pixels
        self.max_tokens = max_tokens or max_positions(scorer.model)
        self.max_samples = max_samples
        self.request_timeout_s = request_timeout_s  # below OpenRLHF's 180 s client timeout
        self.metrics = metrics or Metrics()
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_ms = max_wait_ms
        self.batcher = DynamicBatcher(self._forward, max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens,
                                      max_wait_ms=max_wait_ms, max_queue=max_queue,
                                      on_batch=self.metrics.record_batch)  # fmt: skip
        # HF fast tokenizers are not safe to enter from two threads at once.
        self._encode_lock = threading.Lock()
        self._prompts: OrderedDict[str, PromptEncoding] = OrderedDict()
        self.prompt_cache_size = prompt_cache_size
        self._pool = ThreadPoolExecutor(preprocess_threads, thread_name_prefix="basereward-preprocess")
        self.revision = checkpoint_revision(self.model_dir)
        self.media = MediaRegistry()  # uid -> images registered with POST /v1/media

    def start(self) -> None:
        self.batcher.start()

    def stop(self) -> None:
        self.batcher.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def device(self) -> str:
        return str(model_device(self.scorer.model))

    @property
    def dtype(self) -> str:
        return "bf16-autocast" if self.scorer.autocast_dtype is not None else "fp32"

    def _forward(self, encoded) -> list[list[float]]:
        s = self.scorer
        return score_encoded(s.model, encoded, s.encoder.pad_id, max_rows=max(self.max_batch_size, 1),
                             autocast_dtype=s.autocast_dtype, layout=s.layout)  # fmt: skip

    async def score(self, parse: Callable[[], list[Parsed]], route: str) -> Scored:
        """Run `parse` (request -> Parsed samples) and the encoder off the event loop, then wait for the batch."""
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        parsed, encoded, keys, tokens = await loop.run_in_executor(self._pool, self._prepare, parse)
        preprocess_ms = (time.monotonic() - t0) * 1000
        try:
            future = self.batcher.submit(encoded, keys)
        except QueueFull as e:
            raise Busy(str(e)) from e
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), self.request_timeout_s)
        except asyncio.TimeoutError as e:
            raise Busy(f"not scored within {self.request_timeout_s:g} s") from e
        except Exception as e:  # noqa: BLE001 - the forward failed on this request's own samples
            field = parsed[0].field if len(parsed) == 1 else "body"
            raise BadRequest([RequestError(field, f"could not be scored: {type(e).__name__}: {e}")]) from e
        self.metrics.record_samples(route, len(parsed))
        timing = {
            "queue_ms": result.queue_ms,
            "preprocess_ms": preprocess_ms,
            "forward_ms": result.forward_ms,
        }
        return Scored(parsed, [r[0] for r in result.rewards], tokens, timing)

    def _prepare(self, parse: Callable[[], list[Parsed]]):
        parsed = parse()
        if len(parsed) > self.max_samples:
            raise BadRequest(
                [RequestError("body", f"{len(parsed)} samples, over the limit of {self.max_samples}")]
            )
        encoded, keys, tokens, errors = [], [], [], []
        for p in parsed:
            key = prompt_key(p.sample)
            try:
                enc = self._encode(p.sample, key)
            except DataError as e:  # corrupt image, over the pixel limit, empty response...
                errors.append(e if isinstance(e, RequestError) else _located(p.field, str(e)))
                continue
            n = len(enc.prompt.input_ids) + max(len(r) for r in enc.responses)
            if n > self.max_tokens:
                errors.append(
                    RequestError(p.field, f"input is {n} tokens, over the limit of {self.max_tokens}")
                )
                continue
            encoded.append(enc)
            keys.append(p.group or key or f"unkeyed-{id(p)}")
            tokens.append(n)
        if errors:
            raise BadRequest(errors)
        return parsed, encoded, keys, tokens

    def _encode(self, sample: Sample, key: str | None) -> EncodedSample:
        """`RewardScorer.encode`, with the prompt part (chat template, image decoding and patching) reused for
        samples whose prompt and images were seen recently: the G rollouts of a GRPO group share them."""
        with self._encode_lock:
            cached = self._prompts.get(key) if key is not None else None
            if cached is None:
                enc = self.scorer.encode(sample)
                if key is not None and self.prompt_cache_size > 0:
                    self._prompts[key] = enc.prompt
                    while len(self._prompts) > self.prompt_cache_size:
                        self._prompts.popitem(last=False)
                return enc
            self._prompts.move_to_end(key)
            encoder = self.scorer.encoder
            return EncodedSample(cached, [encoder.response(r) for r in sample.responses], sample.id)


def _located(field: str, message: str) -> RequestError:
    """An encoder error names the most precise field it knows (an image's `where`, inside `field`): keep it."""
    where, sep, rest = message.partition(": ")
    if sep and where.startswith(field):
        return RequestError(where, rest)
    return RequestError(field, message)


def prompt_key(sample: Sample) -> str | None:
    """Equal keys mean equal prompt and images (bytes, or path with size and mtime), hence an identical prompt
    encoding. None for samples with videos (not cached, not grouped)."""
    if sample.videos:
        return None
    h = hashlib.blake2b(json.dumps(sample.prompt, sort_keys=True).encode(), digest_size=16)
    for ref in sample.images:
        if ref.data is not None:
            h.update(ref.data)
        else:
            st = os.stat(ref.path) if os.path.exists(ref.path) else None
            h.update(f"{ref.path}|{st and st.st_size}|{st and st.st_mtime_ns}".encode())
        h.update(b"\x00")
    return h.hexdigest()


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
