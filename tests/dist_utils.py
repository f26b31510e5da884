"""Launch `python -m basereward ...` under torchrun for the multi-process tests (gloo on CPU, one thread a rank)."""

from __future__ import annotations

import os
import subprocess

from basereward.distributed import torchrun_command


def torchrun(args: list[str], nproc: int = 2, timeout: float = 300, env: dict | None = None, cwd=None):
    """Run `torchrun --standalone --nproc_per_node N -m basereward ARGS`; returns the CompletedProcess (text)."""
    full_env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **(env or {}),
    }
    cmd = torchrun_command(nproc, args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)
