"""`basereward serve`: load a reward-model checkpoint and serve every RL framework's contract over HTTP.

    basereward serve --model runs/demo/train/final [--host 127.0.0.1] [--port 8000] [--max-batch-size 32]
        [--max-batch-tokens 32768] [--max-wait-ms 5] [--ensemble-model DIR ...] [--text-model DIR] [--image-root DIR] [--allow-url-prefix https://cdn.example.org/img/]

Binds 127.0.0.1 unless told otherwise: the server reads media on a client's word (data URIs; paths only under
--image-root; URLs only under an allowed prefix), so exposing it is an explicit choice. Routes and contracts:
`basereward.serve.app`. On shutdown (Ctrl-C) the last stdout line is a JSON summary.
"""

from __future__ import annotations


def add_args(p) -> None:
    p.add_argument("--model", required=True, help="trained reward-model directory (basereward checkpoint)")
    p.add_argument(
        "--ensemble-model",
        action="append",
        default=[],
        help="another reward model averaged with --model (mean of raw rewards; repeatable)",
    )
    p.add_argument(
        "--text-model",
        default=None,
        help="reward model for text-only samples (routing by modality; "
        "default: --model and the ensemble score everything)",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--served-model-name", default=None, help="the model id reported to clients (default: --model)"
    )
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument(
        "--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="auto: bf16 on CUDA, fp32 on CPU"
    )
    p.add_argument(
        "--max-batch-size", type=int, default=32, help="max sequences per model forward (1: no batching)"
    )
    p.add_argument(
        "--max-batch-tokens",
        type=_positive,
        default=32768,
        help="max tokens per model forward (prompts counted once per sample; a longer sample runs alone)",
    )
    p.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="max time the oldest request waits for a batch"
    )
    p.add_argument("--deterministic", action="store_true", help="no cross-request batching (debugging)")
    p.add_argument("--image-root", default=None, help="allow image paths under this folder (default: none)")
    p.add_argument(
        "--allow-url-prefix",
        action="append",
        default=[],
        help="allow remote images under this URL prefix (repeatable; default: no remote URLs)",
    )
    p.add_argument("--max-images", type=int, default=16, help="images (and video frames) per sample")
    p.add_argument("--max-image-pixels", type=int, default=16_777_216, help="source width x height per image")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="request body size limit in MiB")
    p.add_argument(
        "--max-tokens", type=int, default=None, help="tokens per sequence (default: the model's limit)"
    )
    p.add_argument("--max-samples", type=int, default=1024, help="samples per request")
    p.add_argument("--prompt-cache", type=int, default=64, help="recent prompt encodings kept (0: none)")
    p.add_argument(
        "--request-timeout-s", type=float, default=150.0, help="answer 429 after this long in queue"
    )
    p.add_argument(
        "--get-reward-path",
        action="append",
        default=[],
        help="extra path for the OpenRLHF route (repeatable; /get_reward is always served)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch intra-op CPU threads (default: torch's)")
    p.add_argument("--log-level", default="warning", help="uvicorn log level")


def _positive(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def build_app(args):
    """The app for parsed `serve` arguments (used by `run` and by the benchmark script)."""
    from pathlib import Path

    from basereward.scoring import load_scorer
    from basereward.serve.app import create_app
    from basereward.serve.media import MediaPolicy
    from basereward.serve.service import RewardService

    if args.threads:
        # On a small CPU host, one thread for the forward leaves a core to the event loop and preprocessing.
        import torch

        torch.set_num_threads(args.threads)
    policy = MediaPolicy(
        image_root=Path(args.image_root) if args.image_root else None,
        allow_url_prefixes=tuple(args.allow_url_prefix),
        max_images=args.max_images,
        max_image_pixels=args.max_image_pixels,
    )

    def load(model_dir):
        return load_scorer(model_dir, device=args.device, dtype=args.dtype, progress=False), model_dir

    service = RewardService(
        load(args.model)[0],
        model_dir=args.model,
        ensemble=[load(d) for d in args.ensemble_model],
        text_scorer=load(args.text_model) if args.text_model else None,
        model_name=args.served_model_name,
        policy=policy,
        max_batch_size=1 if args.deterministic else args.max_batch_size,
        max_batch_tokens=args.max_batch_tokens,
        max_wait_ms=0.0 if args.deterministic else args.max_wait_ms,
        max_tokens=args.max_tokens,
        max_samples=args.max_samples,
        request_timeout_s=args.request_timeout_s,
        prompt_cache_size=args.prompt_cache,
    )
    paths = tuple(dict.fromkeys(["/get_reward", *args.get_reward_path]))
    return create_app(service, max_body_bytes=int(args.max_body_mb * 1024 * 1024), get_reward_paths=paths)


def run(args) -> dict:
    import gc
    import sys

    import uvicorn

    app = build_app(args)
    service = app.state.service
    # Everything loaded so far (torch, transformers, the model) lives as long as the process: keep it out of the
    # cyclic collector's scans, which otherwise land on random requests.
    gc.collect()
    gc.freeze()
    print(
        f"basereward serve: {args.model} on http://{args.host}:{args.port} "
        f"(max batch {service.max_batch_size}, max wait {service.max_wait_ms:g} ms)",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    m = service.metrics
    return {
        "model": service.model_name,
        "revision": service.revision,
        "requests": int(sum(m.requests.values.values())),
        "batches": int(m.batches.get()),
    }
