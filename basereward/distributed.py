"""The process group and the few collectives every verb needs: who am I, split work, gather it back in order.

    torchrun --nproc_per_node 2 -m basereward train --config configs/demo.yaml ...

A process started by torchrun (RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR in its environment) joins the default
process group: nccl on CUDA, gloo on CPU, with a collective timeout so that a dead or stuck peer ends the job with an
error instead of hanging it. A plain process has world size 1 and runs the same code: every helper here is then a
no-op (nothing is initialised, nothing is sent).
"""

from __future__ import annotations

import datetime
import gc
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: no process group (world size 1)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.backend is not None


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init(device: str = "auto", backend: str = "auto", timeout_s: float = 600) -> DistInfo:
    """Join the process group when launched by torchrun (idempotent); otherwise world size 1 on `device`."""
    single = not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1
    if single and not dist.is_initialized():
        dev = torch.device(
            "cuda"
            if device == "auto" and torch.cuda.is_available()
            else ("cpu" if device == "auto" else device)
        )
        return DistInfo(device=dev)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda") or device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    be = backend if backend != "auto" else ("nccl" if use_cuda else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(
            be, timeout=datetime.timedelta(seconds=timeout_s), device_id=dev if use_cuda else None
        )
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, be)


def current() -> DistInfo:
    """The process group already joined (by `init`), or world size 1."""
    if not dist.is_initialized():
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    be = dist.get_backend()
    dev = torch.device("cuda", local_rank) if be == "nccl" else torch.device("cpu")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, be)


def shutdown() -> None:
    """barrier + destroy_process_group: without both, gloo ranks abort at exit (docs/environment.md §6).

    Cyclic garbage is collected first, so that objects still holding the group (a DDP module's reducer kept by a
    reference cycle) let go of it while the runtime is whole rather than at interpreter teardown. Suspected cause
    of a rank aborting at exit with "terminate called without an active exception": seen twice in ~10 full test
    runs on 2 cores, never when the multi-process tests ran alone."""
    if dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def counts_since(counts: dict, since: dict | None = None, across_ranks: bool = False) -> dict:
    """A scorer's work counters minus an earlier snapshot of this rank's (`since`), summed over ranks when
    `across_ranks` (a collective: every rank must ask)."""
    c = {k: v - (since or {}).get(k, 0) for k, v in counts.items()}
    return {k: int(all_sum(v)) for k, v in c.items()} if across_ranks else c


def all_sum(value: float | int, device: torch.device | None = None) -> float:
    """Sum of a number over ranks (itself at world size 1)."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device or current().device)
    dist.all_reduce(t)
    return t.item()


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s object on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """This rank's share of `range(n)`: indices rank, rank + W, rank + 2W, ..., padded by repeating the last one so
    that every rank gets exactly ceil(n / W) items (sharded models need every rank to run the same number of
    forwards). `unshard` puts the gathered results back in order and drops the padding."""
    per_rank = -(-n // world_size) if n else 0
    mine = list(range(rank, n, world_size))
    return mine + [n - 1] * (per_rank - len(mine)) if n else []


def gather_in_order(local: Sequence, n: int) -> list | None:
    """All ranks' `shard_indices` results back in the original order (length n) on rank 0; None on the others.
    At world size 1, `local` itself."""
    if not dist.is_initialized():
        return list(local)
    info = current()
    parts: list | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(list(local), parts, dst=0)
    if not info.is_main:
        return None
    out: list = [None] * n
    for r, part in enumerate(parts):
        for idx, item in zip(range(r, n, info.world_size), part):
            out[idx] = item
    return out


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc_per_node N -m basereward ARGV` (a verb and its flags)."""
    import sys

    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "basereward",
        *map(str, argv),
    ]


def launch(nproc: int, argv: list[str]) -> int:
    """`torchrun_command(nproc, argv)` in this terminal; its exit code."""
    import subprocess

    env = dict(os.environ)
    if not torch.cuda.is_available():  # CPU ranks share the cores instead of each taking all of them
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(torchrun_command(nproc, argv), env=env)
