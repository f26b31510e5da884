"""`basereward serve`: load a reward-model checkpoint and serve every RL framework's contract over HTTP.

    basereward serve --model runs/demo/train/final [--host 127.0.0.1] [--port 8000] [--max-batch-size 32]
        [--max-batch-tokens 32768] [--max-wait-ms 5] [--ensemble-model DIR ...] [--text-model DIR]
        [--image-root DIR] [--allow-url-prefix https://cdn.example.org/img/] [--api-key KEY]
        [--max-body-mb 64] [--max-queue-mb 1024] [--media-cache-mb 1024] [--request-timeout-s 150]

`--model` is a checkpoint or an ensemble directory (`basereward ensemble`: members, weights, normalisation and text
model in its ensemble.json). `--ensemble-model` / `--text-model` are the short way to the plain-mean ensemble
of checkpoints (the same EnsembleScorer, basereward/ensemble.py).

From Python: `build_app(ServeConfig(model="runs/demo/train/final", max_batch_size=8))` is the same app, typed;
`run(args)` only turns the parsed flags into a `ServeConfig` and runs uvicorn on it.

Binds 127.0.0.1 unless told otherwise: the server reads media on a client's word (data URIs; paths only under
--image-root; URLs only under an allowed prefix), so exposing it is an explicit choice, and binding every interface
without an API key (`--api-key`, or the BASEREWARD_API_KEY environment variable) prints a warning. Routes and
contracts: `basereward.serve.app`.

Shutdown (SIGTERM or Ctrl-C) is graceful: uvicorn stops accepting connections and waits for the requests in flight
to be answered, then the lifespan stops the batchers (each scores what is still queued first); the process exits 0
with a JSON summary as the last stdout line.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from basereward.config import call_with_flags

if TYPE_CHECKING:  # fastapi is imported only when an app is built: `basereward --help` must not need it
    from fastapi import FastAPI


@dataclass(frozen=True)
class ServeConfig:
    """Everything `basereward serve` is configured by. The defaults here are the flags' defaults."""

    model: str
    ensemble_models: tuple[str, ...] = ()
    text_model: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    served_model_name: str | None = None
    device: str | None = None
    dtype: str = "auto"
    max_batch_size: int = 32
    max_batch_tokens: int = 32768
    max_wait_ms: float = 5.0
    deterministic: bool = False  # no cross-request batching: batch size 1, no wait
    image_root: str | None = None
    allow_url_prefixes: tuple[str, ...] = ()
    max_images: int = 16
    max_image_pixels: int = 16_777_216
    max_body_mb: float = 64.0
    max_queue_mb: float = 1024.0  # bodies and encodings of the requests in flight; over it: 429
    media_cache_mb: float = 1024.0  # the POST /v1/media registry's images; over it: least recently used go
    max_tokens: int | None = None
    max_samples: int = 1024
    prompt_cache: int = 64
    request_timeout_s: float = 150.0
    get_reward_paths: tuple[str, ...] = ()  # extra paths: /get_reward is always served
    threads: int | None = None
    log_level: str = "warning"
    api_key: str | None = field(default=None, repr=False)  # a secret: kept out of logs and tracebacks

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeConfig:
        return call_with_flags(
            cls,
            args,
            ensemble_models=tuple(args.ensemble_model),
            allow_url_prefixes=tuple(args.allow_url_prefix),
            get_reward_paths=tuple(args.get_reward_path),
            # The environment variable keeps the key out of `ps` and shell history.
            api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        )


API_KEY_ENV = "BASEREWARD_API_KEY"


def add_args(p) -> None:
    d = ServeConfig  # the dataclass's class attributes are its field defaults: one place for each default
    p.add_argument(
        "--model",
        required=True,
        help="trained reward-model directory (basereward checkpoint) or ensemble directory (basereward ensemble)",
    )
    p.add_argument(
        "--ensemble-model",
        action="append",
        default=[],
        help="another reward model averaged with --model (mean of raw rewards; repeatable; for weights or "
        "normalisation build an ensemble directory with `basereward ensemble`)",
    )
    p.add_argument(
        "--text-model",
        default=None,
        help="reward model for text-only samples (routing by modality; "
        "default: --model and the ensemble score everything)",
    )
    p.add_argument("--host", default=d.host, help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument(
        "--served-model-name", default=None, help="the model id reported to clients (default: --model)"
    )
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument(
        "--dtype", default=d.dtype, choices=["auto", "fp32", "bf16"], help="auto: bf16 on CUDA, fp32 on CPU"
    )
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=d.max_batch_size,
        help="max sequences per model forward (1: no batching)",
    )
    p.add_argument(
        "--max-batch-tokens",
        type=_positive,
        default=d.max_batch_tokens,
        help="max tokens per model forward (prompts counted once per sample; a longer sample runs alone)",
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=d.max_wait_ms,
        help="max time the oldest request waits for a batch",
    )
    p.add_argument("--deterministic", action="store_true", help="no cross-request batching (debugging)")
    p.add_argument("--image-root", default=None, help="allow image paths under this folder (default: none)")
    p.add_argument(
        "--allow-url-prefix",
        action="append",
        default=[],
        help="allow remote images under this URL prefix (repeatable; default: no remote URLs)",
    )
    p.add_argument(
        "--max-images", type=int, default=d.max_images, help="images (and video frames) per sample"
    )
    p.add_argument(
        "--max-image-pixels", type=int, default=d.max_image_pixels, help="source width x height per image"
    )
    p.add_argument("--max-body-mb", type=float, default=d.max_body_mb, help="request body size limit in MiB")
    p.add_argument(
        "--max-queue-mb",
        type=float,
        default=d.max_queue_mb,
        help="MiB of request bodies and queued encodings held at once; over it new requests get 429",
    )
    p.add_argument(
        "--media-cache-mb",
        type=float,
        default=d.media_cache_mb,
        help="MiB of images kept by POST /v1/media (least recently used evicted first)",
    )
    p.add_argument(
        "--max-tokens", type=int, default=None, help="tokens per sequence (default: the model's limit)"
    )
    p.add_argument("--max-samples", type=int, default=d.max_samples, help="samples per request")
    p.add_argument(
        "--prompt-cache", type=int, default=d.prompt_cache, help="recent prompt encodings kept (0: none)"
    )
    p.add_argument(
        "--request-timeout-s",
        type=float,
        default=d.request_timeout_s,
        help="answer 503 (and drop the request unscored) when it is not scored within this many seconds",
    )
    p.add_argument(
        "--get-reward-path",
        action="append",
        default=[],
        help="extra path for the OpenRLHF route (repeatable; /get_reward is always served)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch intra-op CPU threads (default: torch's)")
    p.add_argument("--log-level", default=d.log_level, help="uvicorn log level")
    p.add_argument(
        "--api-key",
        default=None,
        help=f"require Authorization: Bearer KEY on every route but /health (default: ${API_KEY_ENV} if set)",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def build_app(config: ServeConfig) -> FastAPI:
    """The app `basereward serve` runs (also what tests and benchmarks build in-process)."""
    from pathlib import Path

    from basereward.ensemble import extra_models_error, is_ensemble_dir
    from basereward.scoring import load_scorer
    from basereward.serve.app import create_app
    from basereward.serve.media import MediaPolicy
    from basereward.serve.service import RewardService

    c = config
    if is_ensemble_dir(c.model) and (c.ensemble_models or c.text_model):
        raise extra_models_error(c.model)  # before loading any model: a 7B member takes minutes
    if c.threads:
        # On a small CPU host, one thread for the forward leaves a core to the event loop and preprocessing.
        import torch

        torch.set_num_threads(c.threads)
    policy = MediaPolicy(
        image_root=Path(c.image_root) if c.image_root else None,
        allow_url_prefixes=c.allow_url_prefixes,
        max_images=c.max_images,
        max_image_pixels=c.max_image_pixels,
    )

    def load(model_dir: str):
        return load_scorer(model_dir, device=c.device, dtype=c.dtype, progress=False), model_dir

    service = RewardService(
        load(c.model)[0],
        model_dir=c.model,
        ensemble=[load(d) for d in c.ensemble_models],
        text_scorer=load(c.text_model) if c.text_model else None,
        model_name=c.served_model_name,
        policy=policy,
        max_batch_size=1 if c.deterministic else c.max_batch_size,
        max_batch_tokens=c.max_batch_tokens,
        max_wait_ms=0.0 if c.deterministic else c.max_wait_ms,
        max_tokens=c.max_tokens,
        max_samples=c.max_samples,
        max_queue_bytes=mib(c.max_queue_mb),
        media_cache_bytes=mib(c.media_cache_mb),
        request_timeout_s=c.request_timeout_s,
        prompt_cache_size=c.prompt_cache,
    )
    paths = tuple(dict.fromkeys(["/get_reward", *c.get_reward_paths]))
    return create_app(service, max_body_bytes=mib(c.max_body_mb), get_reward_paths=paths, api_key=c.api_key)


def mib(value: float) -> int:
    return int(value * 1024 * 1024)


def exposed_without_key(config: ServeConfig) -> bool:
    """Bound to every interface (IPv4 or IPv6 wildcard) with no API key: anyone who can reach the host can score."""
    return config.host.strip("[]") in ("0.0.0.0", "::", "") and not config.api_key


def serve(config: ServeConfig) -> dict:
    """Build the app, serve it until shutdown, and return the run's summary."""
    import gc
    import signal
    import sys
    import threading

    import uvicorn

    app = build_app(config)
    service = app.state.service
    # Everything loaded so far (torch, transformers, the model) lives as long as the process: keep it out of the
    # cyclic collector's scans, which otherwise land on random requests.
    gc.collect()
    gc.freeze()
    print(
        f"basereward serve: {config.model} on http://{config.host}:{config.port} "
        f"(max batch {service.max_batch_size}, max wait {service.max_wait_ms:g} ms)",
        file=sys.stderr,
    )
    if exposed_without_key(config):
        print(
            f"basereward serve: WARNING: listening on every interface ({config.host}) with no API key: anyone "
            f"who can reach this host can use the server; set --api-key or {API_KEY_ENV}",
            file=sys.stderr,
        )
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler installed before
    # it ran: the default one would kill the process (-15) after the graceful part and lose the summary. This one
    # does nothing, since shutdown is complete by then.
    handled = (signal.SIGTERM, signal.SIGINT)
    main = threading.current_thread() is threading.main_thread()
    before = {s: signal.signal(s, lambda *_: None) for s in handled} if main else {}
    try:
        uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    m = service.metrics
    return {
        "model": service.model_name,
        "revision": service.revision,
        "requests": int(m.total("basereward_requests")),
        "batches": int(m.total("basereward_batches")),
    }


def run(args: argparse.Namespace) -> dict:
    return serve(ServeConfig.from_args(args))
