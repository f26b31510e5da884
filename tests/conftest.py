"""Shared fixtures: tiny checkpoints of each architecture, written once per test session. No network."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """{'qwen2_5_vl': dir, 'qwen2_vl': dir, 'qwen2': dir}, size 'test', seed 0."""
    from basereward.tiny import init_tiny

    root = tmp_path_factory.mktemp("tiny")
    return {arch: init_tiny(root / arch, arch=arch, seed=0) for arch in ("qwen2_5_vl", "qwen2_vl", "qwen2")}
