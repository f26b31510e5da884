"""Benchmark (not a test): does cross-request dynamic batching pay off for one-sample-per-request RL clients?

    HF_HUB_OFFLINE=1 python scripts/bench_serve.py [--model DIR] [--clients 32] [--requests 8] [--max-wait-ms 5]

Starts `basereward serve` twice as a separate process on 127.0.0.1 (a free port): with dynamic batching
(--max-batch-size = clients) and without (--max-batch-size 1). Each time, `--clients` concurrent clients each send
`--requests` single-sample requests back to back (OpenRLHF >= 0.10's pattern: one request per rollout), every
request a different synthetic 112 px image question, bodies prepared beforehand. Reports throughput, p50/p99
latency and the throughput ratio; the last stdout line is one JSON object. Without --model a tiny reward model
(init-tiny --size test, random head) is written to a temporary folder.
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


def make_model(root: Path, size: str) -> Path:
    from basereward.model.processor import load_processor
    from basereward.model.reward_model import RewardModel
    from basereward.tiny import init_tiny

    tiny = init_tiny(root / "tiny", arch="qwen2_5_vl", seed=0, size=size)
    return RewardModel.from_backbone(tiny, seed=0).save(root / "rm", load_processor(tiny, "qwen2_5_vl"))


def bodies(n: int, group: int = 1, seed: int = 0) -> list[bytes]:
    """n single-sample /v1/reward bodies, JSON-encoded. Consecutive runs of `group` bodies share one image question
    with different answers (a GRPO group); group 1 makes every body a different image question."""
    from basereward.data.synthetic import IMAGE_KINDS, make_image_pair

    rng = random.Random(seed)
    out = []
    for g in range((n + group - 1) // group):
        img, q, chosen, rejected = make_image_pair(IMAGE_KINDS[g % len(IMAGE_KINDS)], rng)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        for k in range(group):
            answer = chosen if k % 2 else rejected
            answer = answer if group == 1 else f"Answer {k}: {answer}"
            messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                                     {"type": "text", "text": q}]},
                        {"role": "assistant", "content": answer}]  # fmt: skip
            out.append(json.dumps({"samples": [{"uid": f"{g}-{k}", "messages": messages}]}).encode())
    return out[:n]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    model: Path, port: int, max_batch_size: int, max_wait_ms: float, extra: list[str]
) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-m", "basereward.cli", "serve", "--model", str(model), "--port", str(port),
           "--max-batch-size", str(max_batch_size), "--max-wait-ms", str(max_wait_ms), *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 120 s")


async def load(url: str, work: list[list[bytes]]) -> tuple[float, list[float]]:
    """Each client sends its bodies one after another; returns (wall seconds, latencies in seconds)."""
    import httpx

    latencies: list[float] = []
    limits = httpx.Limits(max_connections=len(work) + 4, max_keepalive_connections=len(work) + 4)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:

        async def one_client(items: list[bytes]):
            for body in items:
                t0 = time.perf_counter()
                r = await client.post(url, content=body, headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")

        t0 = time.perf_counter()
        await asyncio.gather(*(one_client(items) for items in work))
        return time.perf_counter() - t0, latencies


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def run_config(model: Path, args, max_batch_size: int, all_bodies: list[bytes]) -> dict:
    import httpx

    port = free_port()
    extra = ["--device", args.device] + (["--threads", str(args.threads)] if args.threads else [])
    extra += args.server_args.split()
    proc = start_server(model, port, max_batch_size, args.max_wait_ms, extra)
    url = f"http://127.0.0.1:{port}/v1/reward"
    try:
        warm = [all_bodies[i : i + 1] for i in range(min(args.clients, len(all_bodies)))]
        asyncio.run(load(url, warm))  # first forwards allocate; not measured
        # Round r sends bodies r*clients .. r*clients + clients-1, one per client: a group's rollouts are in
        # flight at the same time, as when a rollout batch finishes generating.
        work = [all_bodies[c :: args.clients][: args.requests] for c in range(args.clients)]
        wall, lat = asyncio.run(load(url, work))
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        proc.terminate()
        proc.wait(30)
    batches = [line for line in metrics.splitlines() if line.startswith(("basereward_batch_size_sum", "basereward_batch_size_count"))]  # fmt: skip
    total, count = (float(line.split()[-1]) for line in sorted(batches, reverse=True))
    return {
        "max_batch_size": max_batch_size,
        "requests": len(lat),
        "throughput_rps": len(lat) / wall,
        "p50_ms": percentile(lat, 0.50) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "mean_batch": total / count if count else None,
    }


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="reward-model checkpoint (default: a fresh tiny one)")
    p.add_argument("--size", default="test", help="init-tiny size when no --model: test | demo")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=8, help="requests per client")
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=None, help="server's torch CPU threads (both runs)")
    p.add_argument("--device", default="cpu", help="server device: cpu | cuda")
    p.add_argument("--server-args", default="", help="extra `basereward serve` options for both runs")
    p.add_argument("--group", type=int, default=1, help="requests sharing one image question (GRPO group size); "
                   "1: every request a different image")  # fmt: skip
    args = p.parse_args()
    tmp = tempfile.TemporaryDirectory()
    model = Path(args.model) if args.model else make_model(Path(tmp.name), args.size)
    all_bodies = bodies(args.clients * args.requests, group=args.group)
    batched = run_config(model, args, args.clients, all_bodies)
    single = run_config(model, args, 1, all_bodies)
    for r in (batched, single):
        print(f"max_batch_size {r['max_batch_size']:>3}: {r['throughput_rps']:7.1f} req/s   p50 {r['p50_ms']:7.1f} ms"
              f"   p99 {r['p99_ms']:7.1f} ms   mean batch {r['mean_batch']:.1f}", file=sys.stderr)  # fmt: skip
    ratio = batched["throughput_rps"] / single["throughput_rps"]
    print(f"throughput ratio (batched / batch size 1): {ratio:.2f}x", file=sys.stderr)
    tmp.cleanup()
    setup = {
        k: getattr(args, k)
        for k in ("clients", "requests", "group", "threads", "device", "max_wait_ms", "server_args")
    }
    setup["model"] = args.model or f"init-tiny --size {args.size}"
    return {**setup, "throughput_ratio": ratio, "batched": batched, "unbatched": single}


if __name__ == "__main__":
    print(json.dumps(main()))
