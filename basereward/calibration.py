"""A raw reward (the head's Bradley-Terry logit) on the two other scales users ask for; torch-free, so the RL
adapters' remote-reward files can use it.

    sigmoid(r)                  P(this response beats a response of reward 0): the server's `prob`, the hybrid RL
                                reward's model term
    normalize(r, reward_stats)  (r - mean) / std with the checkpoint's validation statistics (basereward.json)
"""

from __future__ import annotations

import math


def sigmoid(x: float) -> float:
    """1 / (1 + e^-x) without overflow: math.exp(-x) overflows for x below about -709."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def normalize(reward: float, stats: dict | None) -> float:
    """`reward` on the validation-calibrated scale; unchanged when the checkpoint has no statistics."""
    stats = stats or {}
    return (reward - stats.get("mean", 0.0)) / (stats.get("std") or 1.0)
