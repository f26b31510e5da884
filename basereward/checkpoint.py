"""Resumable training checkpoints: sharded with `torch.distributed.checkpoint` (DCP), written atomically, restored
exactly, on the same or a different number of processes.

    output_dir/checkpoints/step-000200/
        dcp/                  trained weights + AdamW state (frozen weights come from the backbone again), one file per writing rank plus DCP's `.metadata`; tensors are
                              stored by parameter name and global shape, so any world size (and DDP <-> FSDP) can
                              read them back: DCP reshards on load
        trainer_state.json    step, scheduler state, data position, the world size and strategy that wrote it,
                              metrics; written last, so its presence marks a complete checkpoint

Every rank writes its shards into `step-000200.tmp/`; after a barrier rank 0 writes `trainer_state.json`, fsyncs
every file and directory, and renames the folder into place (see `save_checkpoint`). Old checkpoints are renamed
to a `.tmp` name before they are deleted. A crash at any point (tests/test_crash_safety.py kills the trainer with
SIGKILL in each phase) leaves complete `step-N/` folders only, plus perhaps `.tmp` folders that `resume=auto`
ignores and the next start or save removes. There is no `latest` pointer: the newest complete folder is it.
The final model goes the same way: `final.tmp/`, fsynced, renamed to `final/` (`write_final`).
Random numbers need no saving: the trainer re-derives them from (seed, step, rank) every step. Tensors are read
with weights_only loading, but DCP's `.metadata` file is a pickle (torch's format): resume only from checkpoint
folders your own runs wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from basereward import distributed
from basereward.faults import fault_point
from basereward.types import DataError

STATE_JSON = "trainer_state.json"
DCP_DIR = "dcp"
LEGACY_STATE = "trainer_state.pt"  # single-process checkpoints written before sharded checkpoints existed


class CheckpointError(DataError):
    """A checkpoint that could not be written (disk full, non-finite weights): the message names it and the
    complete checkpoints that are still there."""


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to the disk (POSIX: a rename is durable only once the
    directory that holds it is fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durable(path: Path, text: str) -> None:
    with path.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _discard(path: Path) -> None:
    """Remove a checkpoint directory without ever leaving a half-deleted `step-N/`: it is renamed to a `.tmp` name
    first (atomic), which every reader ignores and the next start or save removes, then deleted."""
    if not path.exists():
        return
    doomed = path.with_name(path.name + ".del.tmp")
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def assert_finite(model: torch.nn.Module, what: str) -> None:
    """Collective: refuse (CheckpointError on every rank) to write `what` if any weight is NaN or Inf on any rank.
    A sharded parameter is checked on its local shard; the ranks' counts are summed so all decide alike."""
    bad = [
        name
        for name, p in model.named_parameters()
        if not bool(torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all())
    ]
    if distributed.all_sum(len(bad)):
        raise CheckpointError(
            f"{what}: refusing to write non-finite weights"
            + (f" ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''} on this rank)" if bad else "")
        )


def save_checkpoint(ckpt_dir: Path, *, model, optimizer, scheduler, step: int, info: dict) -> Path:
    """Collective: every rank calls it with its (possibly sharded) model and optimizer.

    Order on disk: shards into `step-N.tmp/` (DCP fsyncs each), `trainer_state.json` written and fsynced, every
    file and both directories fsynced again, the parent fsynced, the rename, the parent fsynced again so that the
    rename itself survives a power cut. A write that fails (disk full) removes the `.tmp` folder and raises a
    CheckpointError; the checkpoints already there are untouched."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict import get_state_dict

    ckpt_dir = Path(ckpt_dir)
    tmp = ckpt_dir.with_name(ckpt_dir.name + ".tmp")
    me = distributed.current()
    assert_finite(model, f"checkpoint {ckpt_dir}")
    try:
        if me.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        distributed.barrier()
        model_sd, optim_sd = get_state_dict(model, optimizer, options=_options())
        with _quiet_single_process():
            dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp / DCP_DIR))
        distributed.barrier()
        fault_point("ckpt", step, me.rank)
        if me.is_main:
            state = {"step": step, "scheduler": scheduler.state_dict(), "world_size": me.world_size, **info}
            _write_durable(tmp / STATE_JSON, json.dumps(state, indent=2, default=str) + "\n")
            for p in sorted((tmp / DCP_DIR).iterdir()):
                _fsync(p)
            _fsync(tmp / DCP_DIR)
            _fsync(tmp)
            _fsync(tmp.parent)
            _discard(ckpt_dir)  # only when this step is written again (a resume from an explicit older one)
            os.replace(tmp, ckpt_dir)
            fault_point("rename", step, me.rank)
            _fsync(ckpt_dir.parent)
    except (OSError, CheckpointException) as e:
        if me.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        kept = [p.name for p in _complete(ckpt_dir.parent)]
        raise CheckpointError(
            f"checkpoint {ckpt_dir} could not be written ({_reason(e)}); "
            + (f"the complete checkpoints {', '.join(kept)} are intact" if kept else "no earlier checkpoint")
        ) from e
    distributed.barrier()
    return ckpt_dir


def _reason(e: BaseException) -> str:
    """The OS error behind a failed write: DCP reports each rank's exception as (exception, traceback)."""
    for failure in getattr(e, "failures", {}).values():
        inner_e = failure[0] if isinstance(failure, tuple) else failure
        if isinstance(inner_e, OSError):
            e = inner_e
            break
    return f"{e.strerror or e}: {e.filename}" if isinstance(e, OSError) and e.filename else str(e)


def load_checkpoint(ckpt_dir: Path, *, model, optimizer, scheduler) -> dict:
    """Collective: restore model, optimizer and scheduler in place (resharding to this run's world size and
    strategy); returns the trainer state (step, data position, ...)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    ckpt_dir = Path(ckpt_dir)
    state = read_state(ckpt_dir)
    model_sd, optim_sd = get_state_dict(model, optimizer, options=_options())
    with _quiet_single_process():
        dcp.load({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(ckpt_dir / DCP_DIR))
    # strict=False: the frozen keys are absent on purpose; every trained key was requested from DCP above, and
    # dcp.load fails on any it cannot find
    set_state_dict(
        model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd, options=_options(strict=False)
    )
    scheduler.load_state_dict(state["scheduler"])
    return state


def _options(strict: bool = True):
    """Frozen parameters (a LoRA run's base model, a frozen vision tower) are not saved: a resumed run rebuilds them
    from the pretrained backbone, as the first run did. A LoRA step checkpoint of a 7B model is then megabytes."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(ignore_frozen_params=True, strict=strict)


@contextlib.contextmanager
def _quiet_single_process():
    """DCP warns that it "assumes the intent" to run in one process; at world size 1 that is the intent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def is_step_checkpoint(path: Path) -> bool:
    return (Path(path) / STATE_JSON).is_file() and (Path(path) / DCP_DIR).is_dir()


def load_model_weights(ckpt_dir: Path, model) -> None:
    """Only the model's trained weights from a step checkpoint, into a model built as the run built it (one
    process; no optimizer needed): what `basereward export` does with a step checkpoint."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    model_sd = get_model_state_dict(model, options=_options())
    with _quiet_single_process():
        dcp.load({"model": model_sd}, checkpoint_id=str(Path(ckpt_dir) / DCP_DIR))
    set_model_state_dict(model, model_sd, options=_options(strict=False))


def read_state(ckpt_dir: Path) -> dict:
    ckpt_dir = Path(ckpt_dir)
    if (ckpt_dir / LEGACY_STATE).is_file() and not (ckpt_dir / STATE_JSON).is_file():
        raise ValueError(
            f"{ckpt_dir}: a checkpoint from an older basereward (trainer_state.pt); resume it with "
            "that version, or start again from its model files with resume=none"
        )
    if not (ckpt_dir / STATE_JSON).is_file():
        raise FileNotFoundError(f"{ckpt_dir}: no {STATE_JSON}; not a complete training checkpoint")
    return json.loads((ckpt_dir / STATE_JSON).read_text())


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete step checkpoints, oldest first (a `.tmp` folder or one without its state file is incomplete)."""
    return _complete(Path(output_dir) / "checkpoints")


def _complete(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    done = [
        p
        for p in root.glob("step-*")
        if p.is_dir() and not p.name.endswith(".tmp") and (p / STATE_JSON).is_file()
    ]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def clean_partial(output_dir: Path) -> list[str]:
    """Remove the `.tmp` folders a crash left mid-write or mid-delete (rank 0, before anything is written): step
    checkpoints' and the final model's; returns their paths relative to `output_dir`."""
    output_dir = Path(output_dir)
    partials = sorted((output_dir / "checkpoints").glob("step-*.tmp")) + sorted(output_dir.glob("final*.tmp"))
    gone = []
    for partial in partials:
        shutil.rmtree(partial, ignore_errors=True)
        gone.append(str(partial.relative_to(output_dir)))
    return gone


def write_final(final_dir: Path, write: Callable[[Path], object], step: int) -> Path:
    """Write the final model as `write(folder)` writes it, atomically: into `final.tmp/`, every file and the folder
    fsynced, then renamed to `final/` (replacing an older one) and the parent fsynced. A kill before the rename
    leaves no `final/` at all (tests/test_crash_safety.py), so a `final/` that exists is always whole; a write that
    fails (disk full) removes `final.tmp/` and keeps an earlier `final/`. One process calls it."""
    final_dir = Path(final_dir)
    tmp = final_dir.with_name(final_dir.name + ".tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        write(tmp)
        for f in sorted(tmp.rglob("*")):
            _fsync(f)
        _fsync(tmp)
        fault_point("final", step, distributed.current().rank)
        _discard(final_dir)
        os.replace(tmp, final_dir)
        _fsync(final_dir.parent)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = f"; the earlier {final_dir} is intact" if final_dir.is_dir() else ""
        raise CheckpointError(f"the final model {final_dir} could not be written ({_reason(e)}){kept}") from e
    return final_dir


def find_resume(output_dir: Path, resume: str) -> Path | None:
    """`resume`: none | auto | a checkpoint directory."""
    if resume in ("none", "", None):
        return None
    if resume == "auto":
        ckpts = list_checkpoints(output_dir)
        return ckpts[-1] if ckpts else None
    path = Path(resume)
    read_state(path)  # a clear error for a wrong or incomplete directory
    return path


def prune_checkpoints(output_dir: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints and remove stale `.tmp` folders (rank 0 only)."""
    if not distributed.current().is_main:
        return
    for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
        _discard(old)
    clean_partial(output_dir)


def step_seed(seed: int, step: int, rank: int) -> int:
    """The RNG seed of one rank at one step: random numbers (dropout) are a pure function of these three, so a
    resumed run draws what the uninterrupted run drew, with nothing to save."""
    return (seed * 1_000_003 + step * 1_009 + rank) % (2**63)


def seed_step(seed: int, step: int, rank: int) -> None:
    torch.manual_seed(step_seed(seed, step, rank))
