"""Scoring split across the processes torchrun starts, for `basereward eval` and `basereward score`:

    torchrun --nproc_per_node 8 -m basereward score --model runs/rm --input pairs.jsonl

Every rank loads the model and scores its share; rank 0 gets every result back in the original order and alone
writes the report. Work is dealt out in *units* of consecutive items (unit u to rank u mod W), not item by item:
each scorer call then sees the same items whatever the world size, so batched forwards round alike and N processes
write the same bytes as one (given the same kernels and threads per process; torchrun gives each rank one CPU
thread). A plain process is world size 1 and takes the same path without a process group.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

from tqdm import tqdm

from basereward import distributed
from basereward.types import DataError

# Ranks meet only before and after scoring; in between each scores its share for as long as it takes (hours for
# millions of pairs), so the collective timeout must outlast the slowest rank rather than suit a training step.
# A rank that dies still ends the job at once: torchrun stops the others.
TIMEOUT_S = 24 * 3600


def join(device: str = "auto") -> distributed.DistInfo:
    """Join torchrun's process group (cuda:LOCAL_RANK + nccl, or cpu + gloo); a plain process gets world size 1."""
    return distributed.init(device=device, timeout_s=TIMEOUT_S)


def score_sharded(
    items: Sequence,
    score: Callable[[list], list],
    unit: int,
    desc: str,
    progress: bool = True,
    noun: str = "pair",
) -> tuple[list | None, float]:
    """`score` (a list of items -> one result per item) over this rank's units of `unit` items. Returns every
    result in the original order on rank 0 (None on the others) and the seconds from the common start to the
    gather, as rank 0 saw them."""
    info = distributed.current()
    n_units = -(-len(items) // unit)
    mine = distributed.shard_indices(n_units, info.rank, info.world_size)
    spans = [range(u * unit, min((u + 1) * unit, len(items))) for u in mine]
    distributed.barrier()  # time the scoring, not the slowest rank's model load
    t0 = time.perf_counter()
    local, error = [], None
    with tqdm(
        total=sum(map(len, spans)),
        desc=desc,
        unit=noun,
        file=sys.stderr,
        mininterval=0.5,
        disable=not (progress and info.is_main),
    ) as bar:
        try:
            for span in spans:
                local.append(score([items[i] for i in span]))
                bar.update(len(span))
        except (DataError, OSError) as e:  # bad input (a missing or unreadable image): fail every rank below
            error = e
    _fail_together(error)
    parts = distributed.gather_in_order(local, n_units)
    seconds = time.perf_counter() - t0
    return (None if parts is None else [r for part in parts for r in part]), seconds


def _fail_together(error: Exception | None) -> None:
    """A bad record fails only the rank that scores it; the others would wait for it at the gather. So before the
    gather every rank learns whether any failed, and then all stop: the failing ones with their own error, the
    rest with one line pointing to it."""
    if distributed.current().enabled:
        failed = int(distributed.all_sum(int(error is not None)))
        if failed:
            distributed.shutdown()  # every rank is here: close the group together, as a clean exit would
            error = error or DataError(
                f"scoring failed on {failed} other rank(s); see their error in this log"
            )
    if error is not None:
        raise error
