"""Soak benchmark (not a test): does `basereward serve` stay up, answer every bad request with a 4xx and keep its
memory flat under a long mix of valid, invalid, oversize and abandoned requests?

    HF_HUB_OFFLINE=1 python scripts/soak_serve.py [--model DIR] [--seconds 600] [--clients 32]
        [--max-requests 1000000] [--max-body-mb 1] [--max-images 4] [--threads N] [--server-args "..."]

Starts `basereward serve` on 127.0.0.1 (a free port) as a subprocess; without --model a test-size tiny reward model
is written to a temporary folder first. `--clients` concurrent clients then send requests back to back, each on a
fresh connection (connection churn is part of the soak), until `--seconds` have passed or `--max-requests` were sent.
Each request is drawn from a fixed mix:

- valid: one-sample /v1/reward bodies with a small image, GRPO-style groups of 4 sharing an image question;
- invalid: bad JSON, wrong fields, an image whose base64 does not decode (each must be a 4xx);
- oversize: a body over --max-body-mb (413; the server may also reset the connection while the body is sent),
  and a sample with more images than --max-images (4xx);
- disconnects: a client that closes mid-body, and one that sends a valid request and leaves before the answer.

The server's RSS (VmRSS in /proc/PID/status) is sampled after a warm-up (`rss_start_mb`: first-use allocations are
not a leak), every few seconds, and at the end. The last stdout line is one JSON object: `requests`,
`errors_5xx`, `rss_start_mb`, `rss_end_mb`, `rss_growth_pct`, `p50_ms`/`p99_ms` (of valid requests answered 200),
counts by status and by request kind, connection errors, and whether /health still answers. The goal is 0 5xx, no
connection error outside the oversize kind, and RSS growth under 10 %. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import HOST, bodies, free_port, make_model, percentile, request, start_server  # noqa: E402

# (kind, weight): mostly valid traffic, as in an RL run, with every failure mode present throughout
MIX = [
    ("valid", 60),
    ("bad_json", 6),
    ("wrong_fields", 6),
    ("bad_base64", 6),
    ("oversize_body", 6),
    ("too_many_images", 6),
    ("disconnect_mid_body", 5),
    ("disconnect_before_answer", 5),
]
REQUEST_TIMEOUT_S = 120.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def invalid_bodies(valid: bytes, max_body_mb: float, max_images: int) -> dict[str, bytes]:
    """One body per bad kind, derived from a valid body so only the fault differs."""
    sample = json.loads(valid)["samples"][0]
    image = sample["messages"][0]["content"][0]
    bad_image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,!!not*base64!!"}}
    many = dict(sample, messages=[dict(sample["messages"][0], content=[image] * (max_images + 1))])
    many["messages"].append(sample["messages"][1])
    filler = base64.b64encode(os.urandom(int(max_body_mb * (1 << 20) * 0.8) + 1024)).decode()
    return {
        "bad_json": valid[: len(valid) // 2],
        "wrong_fields": json.dumps({"samples": [{"uid": "x", "mesages": sample["messages"]}]}).encode(),
        "bad_base64": json.dumps(
            {
                "samples": [
                    dict(sample, messages=[{"role": "user", "content": [bad_image]}, sample["messages"][1]])
                ]
            }
        ).encode(),
        "too_many_images": json.dumps({"samples": [many]}).encode(),
        "oversize_body": json.dumps({"samples": [dict(sample, uid=filler)]}).encode(),
    }


async def send(body: bytes, *, cut: str | None = None) -> int | None:
    """POST /v1/reward on a fresh connection; the status, or None when `cut` makes the client leave early
    ("body": close halfway through the body; "answer": send everything, close before reading the answer)."""
    reader, writer = await asyncio.open_connection(HOST, PORT)
    try:
        head = f"POST /v1/reward HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        writer.write(f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        if cut == "body":
            writer.write(body[: len(body) // 2])
            await writer.drain()
            return None
        writer.write(body)
        await writer.drain()
        if cut == "answer":
            return None
        status = int((await reader.readline()).split()[1])
        length = None
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        await (reader.readexactly(length) if length is not None else reader.read())
        return status
    finally:
        writer.close()


PORT = 0


async def soak(args, valid: list[bytes], bad: dict[str, bytes]) -> dict:
    kinds, weights = zip(*MIX)
    by_kind: dict[str, Counter] = defaultdict(Counter)
    latencies: list[float] = []
    conn_errors: Counter = Counter()
    sent = 0
    stop_at = time.monotonic() + args.seconds

    async def client(seed: int):
        nonlocal sent
        rng = random.Random(seed)
        while time.monotonic() < stop_at and sent < args.max_requests:
            sent += 1
            kind = rng.choices(kinds, weights)[0]
            body = rng.choice(valid) if kind.startswith(("valid", "disconnect")) else bad[kind]
            cut = {"disconnect_mid_body": "body", "disconnect_before_answer": "answer"}.get(kind)
            t0 = time.perf_counter()
            try:
                status = await asyncio.wait_for(send(body, cut=cut), REQUEST_TIMEOUT_S)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError) as e:
                conn_errors[f"{kind}:{type(e).__name__}"] += 1
                continue
            by_kind[kind][str(status) if status is not None else "left"] += 1
            if kind == "valid" and status == 200:
                latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(client(c) for c in range(args.clients)))
    statuses = Counter()
    for c in by_kind.values():
        statuses.update(c)
    return {
        "requests": sent,
        "errors_5xx": sum(n for s, n in statuses.items() if s.isdigit() and int(s) >= 500),
        "by_status": dict(sorted(statuses.items())),
        "by_kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
        "connection_errors": dict(conn_errors),
        "p50_ms": percentile(latencies, 0.50) * 1000 if latencies else None,
        "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else None,
    }


async def sample_rss(pid: int, every_s: float, out: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        out.append(rss_mb(pid))
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except asyncio.TimeoutError:
            pass


async def run(args, pid: int, valid: list[bytes], bad: dict[str, bytes]) -> tuple[dict, list[float]]:
    samples: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(pid, 5.0, samples, stop))
    try:
        result = await soak(args, valid, bad)
    finally:
        stop.set()
        await sampler
    return result, samples


def main() -> dict:
    global PORT
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model", default=None, help="reward-model checkpoint (default: a fresh test-size tiny one)"
    )
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--max-requests", type=int, default=1_000_000, help="stop after this many requests")
    p.add_argument(
        "--max-body-mb", type=float, default=1.0, help="the server's body limit (oversize bodies exceed it)"
    )
    p.add_argument("--max-images", type=int, default=4, help="the server's images per sample")
    p.add_argument("--image-px", type=int, default=56, help="square image side of the valid requests")
    p.add_argument("--threads", type=int, default=1, help="server's torch CPU threads")
    p.add_argument("--server-args", default="", help="extra `basereward serve` options")
    args = p.parse_args()
    tmp = tempfile.TemporaryDirectory()
    model = Path(args.model) if args.model else make_model(Path(tmp.name), "test", args.image_px)
    valid = bodies(64, group=4, image_px=args.image_px)
    bad = invalid_bodies(valid[0], args.max_body_mb, args.max_images)
    PORT = free_port()
    extra = ["--device", "cpu", "--threads", str(args.threads), "--max-body-mb", str(args.max_body_mb)]
    extra += ["--max-images", str(args.max_images), *args.server_args.split()]
    proc = start_server(model, PORT, 32, 5.0, extra)
    try:
        rss_boot = rss_mb(proc.pid)
        for body in valid[:16]:  # warm-up: first-use allocations (caches, lazy imports) are not a leak
            asyncio.run(send(body))
        rss_start = rss_mb(proc.pid)
        result, samples = asyncio.run(run(args, proc.pid, valid, bad))
        time.sleep(1.0)  # let the last abandoned requests finish on the server
        rss_end = rss_mb(proc.pid)
        health = asyncio.run(request(PORT, "GET", "/health"))[0]
    finally:
        proc.terminate()
        proc.wait(30)
    tmp.cleanup()
    return {
        **result,
        "seconds": args.seconds,
        "clients": args.clients,
        "rss_boot_mb": round(rss_boot, 1),
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_max_mb": round(max(samples + [rss_end]), 1),
        "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2),
        "rss_samples_mb": [round(x, 1) for x in samples],  # every 5 s: a leak climbs, a warm-up levels off
        "health_after": health,
        "model": args.model or "init-tiny --size test",
    }


if __name__ == "__main__":
    print(json.dumps(main()))
