"""Benchmark (not a test): throughput of the dynamic batcher when 10 % of requests make the forward fail.

    HF_HUB_OFFLINE=1 python scripts/bench_poison.py [--model DIR | --size test|demo|bench] [--image-px 224]
        [--clients 32] [--requests 8] [--poison 0.1] [--threads N]

In-process: a real reward model scores real encoded single-sample requests through `DynamicBatcher`; `--clients`
threads each submit `--requests` requests back to back (the server's pattern: one job per request). A poisoned
request's prompt makes the forward raise, through a wrapper around the model's forward (not a hook in the model):
either before it computes (`start`: an input check, or an out-of-memory at the first big allocation; a failed
forward costs nothing) or after (`end`: the failed forward's full time is spent, the worst case for retrying big
batches). Each configuration is run clean and with `--poison` of the requests poisoned, failing at start and at end, with the current batcher (bisection) and,
with the batcher of git revision `--old-rev` when that one still retries one sample at a time (once bisection is
committed, pass the commit before it), so the cost of isolating failures is compared on the same model and machine. Configurations alternate, `--repeats` times; the
median requests/s is reported with the forwards run and requests failed. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def old_batcher(rev: str, tmp: Path):
    """`DynamicBatcher` from git revision `rev`, imported under another name; None when git cannot show it."""
    try:
        src = subprocess.run(
            ["git", "show", f"{rev}:basereward/serve/batcher.py"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    if b"_isolating" in src:  # that revision already bisects: nothing older to compare with
        return None
    path = tmp / "old_batcher.py"
    path.write_bytes(src)
    spec = importlib.util.spec_from_file_location("old_batcher", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod.DynamicBatcher


def load_requests(scorer, n: int, image_px: int) -> list:
    """n encoded single-sample requests, every one a different image question (no prompt sharing)."""
    from bench_serve import bodies

    from basereward.types import ImageRef, Sample

    out = []
    for body in bodies(n, group=1, image_px=image_px):
        msgs = json.loads(body)["samples"][0]["messages"]
        uri = msgs[0]["content"][0]["image_url"]["url"]
        data = base64.b64decode(uri.split(",", 1)[1])
        sample = Sample(
            [{"role": "user", "content": "<image>\n" + msgs[0]["content"][1]["text"]}],
            [msgs[1]["content"]],
            [ImageRef(data=data)],
        )
        out.append(scorer.encode(sample))
    return out


def run(batcher_cls, scorer, requests: list, poisoned: set[int], fail_at: str, clients: int, max_batch: int):
    forwards = [0]

    def forward(encoded):
        forwards[0] += 1
        bad = any(id(e.prompt) in poisoned for e in encoded)
        if bad and fail_at == "start":
            raise RuntimeError("poisoned sample in the batch")
        out = scorer.score_encoded(encoded, max_rows=max_batch)
        if bad:
            raise RuntimeError("poisoned sample in the batch")
        return out

    batcher = batcher_cls(forward, max_batch_size=max_batch, max_wait_ms=5.0)
    batcher.start()
    failed = [0]
    lock = threading.Lock()

    def client(items):
        for e in items:
            try:
                batcher.submit([e], [str(id(e))]).result(600)
            except RuntimeError:
                with lock:
                    failed[0] += 1

    threads = [threading.Thread(target=client, args=(requests[c::clients],)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    batcher.stop()
    return {
        "requests": len(requests),
        "rps": len(requests) / wall,
        "forwards": forwards[0],
        "failed": failed[0],
        "expected_failed": len(poisoned),
    }


def main() -> dict:
    import torch
    from bench_serve import make_model

    from basereward.scoring import load_scorer
    from basereward.serve.batcher import DynamicBatcher

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="reward-model checkpoint (default: a fresh tiny one)")
    p.add_argument("--size", default="test", help="init-tiny size when no --model: test | demo | bench")
    p.add_argument("--image-px", type=int, default=224)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=8, help="requests per client")
    p.add_argument(
        "--poison", type=float, default=0.1, help="fraction of requests that make the forward fail"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--old-rev", default="HEAD", help="git revision whose batcher is the baseline")
    p.add_argument("--repeats", type=int, default=3, help="runs per configuration (median reported)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    model = Path(args.model) if args.model else make_model(Path(tmp.name), args.size, args.image_px)
    scorer = load_scorer(model, device="cpu", progress=False)
    n = args.clients * args.requests
    requests = load_requests(scorer, n, args.image_px)
    bad = random.Random(args.seed).sample(range(n), round(args.poison * n))
    poisoned = {id(requests[i].prompt) for i in bad}
    impls = {"bisection": DynamicBatcher}
    old = old_batcher(args.old_rev, Path(tmp.name))
    if old is not None:
        impls["serial_retry"] = old
    run(DynamicBatcher, scorer, requests[: args.clients], set(), "end", args.clients, args.clients)  # warm-up
    modes = {
        "clean": (set(), "end"),
        "poisoned_fail_at_start": (poisoned, "start"),
        "poisoned_fail_at_end": (poisoned, "end"),
    }
    runs: dict[str, list[dict]] = {}
    for _ in range(
        args.repeats
    ):  # alternate so that load drift on a shared host hits every configuration alike
        for name, cls in impls.items():
            for label, (poison, fail_at) in modes.items():
                r = run(cls, scorer, requests, poison, fail_at, args.clients, args.clients)
                runs.setdefault(f"{name}_{label}", []).append(r)
    results = {}
    for key, rs in runs.items():
        r = dict(
            rs[0], rps=statistics.median(x["rps"] for x in rs), rps_runs=[round(x["rps"], 1) for x in rs]
        )
        results[key] = r
        print(
            f"{key:>40}: {r['rps']:7.1f} req/s  {r['forwards']:4d} forwards  "
            f"{r['failed']}/{r['expected_failed']} failed",
            file=sys.stderr,
        )
    tmp.cleanup()
    setup = {k: getattr(args, k) for k in ("clients", "requests", "poison", "image_px", "threads", "old_rev")}
    setup["model"] = args.model or f"init-tiny --size {args.size}"
    return {**setup, **results}


if __name__ == "__main__":
    print(json.dumps(main()))
