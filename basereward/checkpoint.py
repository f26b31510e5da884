"""Resumable training checkpoints: sharded with `torch.distributed.checkpoint` (DCP), written atomically, restored
exactly, on the same or a different number of processes.

    output_dir/checkpoints/step-000200/
        dcp/                  trained weights + AdamW state (frozen weights come from the backbone again), one file per writing rank plus DCP's `.metadata`; tensors are
                              stored by parameter name and global shape, so any world size (and DDP <-> FSDP) can
                              read them back: DCP reshards on load
        trainer_state.json    step, scheduler state, data position, the world size and strategy that wrote it,
                              metrics; written last, so its presence marks a complete checkpoint

Every rank writes its shards into `step-000200.tmp/`; after a barrier rank 0 writes `trainer_state.json`, fsyncs it
and the folder, and renames the folder into place. A crash at any point leaves either the previous checkpoints only
or a `.tmp` folder that `resume=auto` ignores and the next save removes. Random numbers need no saving: the trainer
re-derives them from (seed, step, rank) every step. Nothing is unpickled: DCP reads tensors and plain metadata.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from pathlib import Path

import torch

from basereward import distributed

STATE_JSON = "trainer_state.json"
DCP_DIR = "dcp"
LEGACY_STATE = "trainer_state.pt"  # single-process checkpoints written before sharded checkpoints existed


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(ckpt_dir: Path, *, model, optimizer, scheduler, step: int, info: dict) -> Path:
    """Collective: every rank calls it with its (possibly sharded) model and optimizer."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    ckpt_dir = Path(ckpt_dir)
    tmp = ckpt_dir.with_name(ckpt_dir.name + ".tmp")
    me = distributed.current()
    if me.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    distributed.barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer, options=_options())
    with _quiet_single_process():
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp / DCP_DIR))
    distributed.barrier()
    if me.is_main:
        state = {"step": step, "scheduler": scheduler.state_dict(), "world_size": me.world_size, **info}
        with (tmp / STATE_JSON).open("w") as f:
            f.write(json.dumps(state, indent=2, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for p in (tmp / DCP_DIR).iterdir():
            _fsync(p)
        _fsync(tmp / DCP_DIR)
        _fsync(tmp)
        if ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)
        tmp.rename(ckpt_dir)
        _fsync(ckpt_dir.parent)
    distributed.barrier()
    return ckpt_dir


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
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [
        p
        for p in root.glob("step-*")
        if p.is_dir() and not p.name.endswith(".tmp") and (p / STATE_JSON).is_file()
    ]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


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
        shutil.rmtree(old, ignore_errors=True)
    for partial in (Path(output_dir) / "checkpoints").glob("step-*.tmp"):  # left by a crash mid-write
        shutil.rmtree(partial, ignore_errors=True)


def step_seed(seed: int, step: int, rank: int) -> int:
    """The RNG seed of one rank at one step: random numbers (dropout) are a pure function of these three, so a
    resumed run draws what the uninterrupted run drew, with nothing to save."""
    return (seed * 1_000_003 + step * 1_009 + rank) % (2**63)


def seed_step(seed: int, step: int, rank: int) -> None:
    torch.manual_seed(step_seed(seed, step, rank))
