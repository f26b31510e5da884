"""Resumable training checkpoints: written atomically, restored exactly.

    output_dir/checkpoints/step-000200/
        (a reward-model directory: backbone safetensors, head.safetensors, processor files, basereward.json)
        trainer_state.pt      optimizer, scheduler, torch RNG states (tensors and plain values only)
        trainer_state.json    step, metrics, config (for humans)

A checkpoint is written under a temporary name and renamed when complete, so a crash mid-write never leaves a
directory that `resume=auto` would pick. `trainer_state.pt` is our own file, read back with
`torch.load(weights_only=True)`: no arbitrary unpickling.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch

STATE_PT = "trainer_state.pt"
STATE_JSON = "trainer_state.json"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(_py_state())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _py_state():
    version, internal, gauss = random.getstate()
    return version, list(internal), gauss


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(ckpt_dir: Path, *, model, processor, optimizer, scheduler, step: int, info: dict) -> Path:
    ckpt_dir = Path(ckpt_dir)
    tmp = ckpt_dir.with_name(ckpt_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save(tmp, processor)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(),
                "step": step}, tmp / STATE_PT)  # fmt: skip
    (tmp / STATE_JSON).write_text(json.dumps({"step": step, **info}, indent=2, default=str) + "\n")
    if ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    tmp.rename(ckpt_dir)
    return ckpt_dir


def load_trainer_state(ckpt_dir: Path) -> dict:
    return torch.load(Path(ckpt_dir) / STATE_PT, map_location="cpu", weights_only=True)


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete step checkpoints, oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [
        p
        for p in root.glob("step-*")
        if p.is_dir() and not p.name.endswith(".tmp") and (p / STATE_PT).is_file()
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
    if not (path / STATE_PT).is_file():
        raise FileNotFoundError(f"resume={resume}: no {STATE_PT} there")
    return path


def prune_checkpoints(output_dir: Path, keep: int) -> None:
    for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
