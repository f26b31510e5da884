"""Benchmark (not a test): does cross-request dynamic batching pay off for one-sample-per-request RL clients?

    HF_HUB_OFFLINE=1 python scripts/bench_serve.py [--model DIR | --size test|demo|bench] [--image-px 448]
        [--clients 32] [--requests 16] [--groups 1,8] [--max-wait-ms 5]

For each group size G in --groups, starts `basereward serve` twice as a separate process on 127.0.0.1 (a free port):
with dynamic batching (--max-batch-size = clients) and without (--max-batch-size 1). Each time `--clients`
concurrent clients each send `--requests` single-sample /v1/reward requests back to back (OpenRLHF >= 0.10's
pattern: one request per rollout), bodies prepared beforehand. G = 1: every request is a different image question.
G = 8: consecutive runs of 8 requests are the rollouts of one GRPO group (same image and question, different
answers), sent at the same time, as when a rollout batch finishes generating. Reports throughput, p50/p99 latency,
mean batch size and the throughput ratio per G; the last stdout line is one JSON object.

The load generator is a minimal keep-alive HTTP/1.1 client on raw asyncio streams: on a small host the client
shares the cores with the server, and httpx's per-request CPU cost alone halves what a server can be measured at.
Without --model a reward model is written to a temporary folder (init-tiny --size, random head, the processor's
max_pixels set to --image-px squared so the image keeps its resolution).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"


def make_model(root: Path, size: str, image_px: int) -> Path:
    from basereward.model.processor import load_processor
    from basereward.model.reward_model import RewardModel
    from basereward.tiny import init_tiny

    tiny = init_tiny(root / "tiny", arch="qwen2_5_vl", seed=0, size=size)
    processor = load_processor(tiny, "qwen2_5_vl", max_pixels=image_px * image_px)
    return RewardModel.from_backbone(tiny, seed=0).save(root / "rm", processor)


def bodies(n: int, group: int = 1, image_px: int = 112, seed: int = 0) -> list[bytes]:
    """n single-sample /v1/reward bodies, JSON-encoded. Consecutive runs of `group` bodies share one image question
    with different answers (a GRPO group); group 1 makes every body a different image question."""
    from PIL import Image

    from basereward.data.synthetic import IMAGE_KINDS, make_image_pair

    rng = random.Random(seed)
    out = []
    for g in range((n + group - 1) // group):
        img, q, chosen, rejected = make_image_pair(IMAGE_KINDS[g % len(IMAGE_KINDS)], rng)
        if img.width != image_px:
            img = img.resize((image_px, image_px), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        for k in range(group):
            answer = chosen if k % 2 else rejected
            answer = answer if group == 1 else f"Answer {k}: {answer}"
            messages = [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": uri}},
                        {"type": "text", "text": q},
                    ],
                },
                {"role": "assistant", "content": answer},
            ]
            out.append(json.dumps({"samples": [{"uid": f"{g}-{k}", "messages": messages}]}).encode())
    return out[:n]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, max_batch_size: int, max_wait_ms: float, extra: list[str]):
    cmd = [
        sys.executable,
        "-m",
        "basereward.cli",
        "serve",
        "--model",
        str(model),
        "--port",
        str(port),
        "--max-batch-size",
        str(max_batch_size),
        "--max-wait-ms",
        str(max_wait_ms),
        *extra,
    ]
    proc = subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if asyncio.run(request(port, "GET", "/health"))[0] == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 120 s")


async def _exchange(reader, writer, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
    writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def request(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        return await _exchange(reader, writer, method, path, body)
    finally:
        writer.close()


async def load(port: int, work: list[list[bytes]]) -> tuple[float, list[float]]:
    """Each client sends its bodies one after another on one keep-alive connection; returns (wall seconds,
    latencies in seconds)."""
    latencies: list[float] = []

    async def one_client(items: list[bytes]):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            for body in items:
                t0 = time.perf_counter()
                status, reply = await _exchange(reader, writer, "POST", "/v1/reward", body)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {reply[:300]!r}")
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client(items) for items in work))
    return time.perf_counter() - t0, latencies


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def run_config(model: Path, args, max_batch_size: int, all_bodies: list[bytes]) -> dict:
    port = free_port()
    extra = ["--device", args.device] + (["--threads", str(args.threads)] if args.threads else [])
    extra += args.server_args.split()
    proc = start_server(model, port, max_batch_size, args.max_wait_ms, extra)
    try:
        asyncio.run(load(port, [all_bodies[i : i + 1] for i in range(args.clients)]))  # warm-up, not measured
        # Round r sends bodies r*clients .. r*clients + clients-1, one per client: a group's rollouts are in
        # flight at the same time.
        work = [all_bodies[c :: args.clients][: args.requests] for c in range(args.clients)]
        before = batch_counts(port)
        wall, lat = asyncio.run(load(port, work))
        after = batch_counts(port)
    finally:
        proc.terminate()
        proc.wait(30)
    rows, batches = after[0] - before[0], after[1] - before[1]
    return {
        "max_batch_size": max_batch_size,
        "requests": len(lat),
        "throughput_rps": len(lat) / wall,
        "p50_ms": percentile(lat, 0.50) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "mean_batch": rows / batches if batches else None,
    }


def batch_counts(port: int) -> tuple[float, float]:
    """(sequences scored, forwards run) so far, from the server's Prometheus /metrics."""
    text = asyncio.run(request(port, "GET", "/metrics"))[1].decode()
    values = dict(line.split()[:2] for line in text.splitlines() if line.startswith("basereward_batch_size_"))
    get = lambda name: float(values.get(f"basereward_batch_size_{name}", 0))  # noqa: E731
    return get("sum"), get("count")


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="reward-model checkpoint (default: a fresh tiny one)")
    p.add_argument("--size", default="bench", help="init-tiny size when no --model: test | demo | bench")
    p.add_argument("--image-px", type=int, default=448, help="square image side (448 px = 256 image tokens)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=16, help="requests per client")
    p.add_argument(
        "--groups", default="1,8", help="GRPO group sizes to run, comma-separated (1: all different)"
    )
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=None, help="server's torch CPU threads (both runs)")
    p.add_argument("--device", default="cpu", help="server device: cpu | cuda")
    p.add_argument("--server-args", default="", help="extra `basereward serve` options for both runs")
    args = p.parse_args()
    tmp = tempfile.TemporaryDirectory()
    model = Path(args.model) if args.model else make_model(Path(tmp.name), args.size, args.image_px)
    results = {}
    for group in (int(g) for g in args.groups.split(",")):
        all_bodies = bodies(args.clients * args.requests, group=group, image_px=args.image_px)
        batched = run_config(model, args, args.clients, all_bodies)
        single = run_config(model, args, 1, all_bodies)
        ratio = batched["throughput_rps"] / single["throughput_rps"]
        for r in (batched, single):
            print(
                f"group {group}  max_batch_size {r['max_batch_size']:>3}: {r['throughput_rps']:7.1f} req/s   "
                f"p50 {r['p50_ms']:7.1f} ms   p99 {r['p99_ms']:7.1f} ms   mean batch {r['mean_batch']:.1f}",
                file=sys.stderr,
            )
        print(f"group {group}  throughput ratio (batched / batch size 1): {ratio:.2f}x", file=sys.stderr)
        results[f"group_{group}"] = {"throughput_ratio": ratio, "batched": batched, "unbatched": single}
    tmp.cleanup()
    setup = {
        k: getattr(args, k)
        for k in ("clients", "requests", "image_px", "threads", "device", "max_wait_ms", "server_args")
    }
    setup["model"] = args.model or f"init-tiny --size {args.size}"
    return {**setup, **results}


if __name__ == "__main__":
    print(json.dumps(main()))
