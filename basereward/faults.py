"""Fault injection for the tests: kill, hang or poison one rank at one step, in a chosen phase.

    BASEREWARD_FAULT="KIND@RANK:STEP[:PHASE]"       several, comma-separated: "kill@0:3:ckpt,nan@1:5"

KIND: kill (SIGKILL itself: no handler, no cleanup, like the OOM killer or a lost node), hang (sleep for an hour,
like a stuck collective), nan (the trainer multiplies that rank's loss by NaN). PHASE, where in step STEP it lands:
  step      before the step's batch is used (the default; the form without a phase)
  forward   after a micro-batch's forward, before its backward
  optim     after the optimizer has updated the weights in memory, before the scheduler steps
  ckpt      while writing checkpoint step-STEP: its shards are in step-STEP.tmp/, the state file and rename are not
  rename    checkpoint step-STEP renamed into place, before its parent directory is fsynced and old ones pruned
  final     the final model written to final.tmp/ and fsynced, not yet renamed to final/ (STEP: the last step)
A nan fault is read with `poisoned`, not `fault_point`. Nothing happens when the variable is unset.
"""

from __future__ import annotations

import os
import signal
import time

ENV = "BASEREWARD_FAULT"
PHASES = ("step", "forward", "optim", "ckpt", "rename", "final")


def parse(spec: str | None) -> list[tuple[str, int, int, str]]:
    """(kind, rank, step, phase) for each comma-separated fault; a malformed one is a ValueError naming it."""
    faults = []
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        try:
            kind, where = item.split("@")
            parts = where.split(":")
            rank, step = int(parts[0]), int(parts[1])
            phase = parts[2] if len(parts) > 2 else "step"
            if kind not in ("kill", "hang", "nan") or phase not in PHASES or len(parts) > 3:
                raise ValueError
        except (ValueError, IndexError):
            raise ValueError(
                f"{ENV}={spec!r}: expected KIND@RANK:STEP[:PHASE] with KIND kill|hang|nan and PHASE one of "
                f"{', '.join(PHASES)}"
            ) from None
        faults.append((kind, rank, step, phase))
    return faults


def fault_point(phase: str, step: int, rank: int) -> None:
    """Kill or hang this process if a kill/hang fault names this (rank, step, phase)."""
    for kind, r, s, p in parse(os.environ.get(ENV)):
        if (r, s, p) == (rank, step, phase) and kind in ("kill", "hang"):
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(3600)


def poisoned(step: int, rank: int) -> bool:
    """Whether a nan fault names this rank and step (its loss is to be made NaN)."""
    return any(k == "nan" and (r, s) == (rank, step) for k, r, s, _ in parse(os.environ.get(ENV)))
