"""The reward head: an MLP mapping the scored token's hidden state to one scalar.

Paper default (BaseReward section 4.2, Table 2): 2 layers with SiLU between them, h -> h -> 1. `layers=1` is the
plain linear head; `activation="none"` stacks linear layers with nothing between them (the Table 2 ablation rows).
"""

from __future__ import annotations

import torch
from torch import nn

from basereward.config import ACTIVATION_NAMES, HeadConfig

ACTIVATIONS = {"none": nn.Identity, "tanh": nn.Tanh, "silu": nn.SiLU, "relu": nn.ReLU}
assert set(ACTIVATIONS) == set(ACTIVATION_NAMES)  # the config validates names; this maps them


class RewardHead(nn.Module):
    def __init__(self, hidden_size: int, cfg: HeadConfig = HeadConfig()):
        super().__init__()
        self.cfg = cfg
        width = cfg.width or hidden_size
        dims = [hidden_size] + [width] * (cfg.layers - 1) + [1]
        mods: list[nn.Module] = []
        for i in range(cfg.layers):
            if cfg.dropout:
                mods.append(nn.Dropout(cfg.dropout))
            # No bias on the output layer: Bradley-Terry only sees r_c - r_r, so a constant offset never gets a
            # gradient; calibration (reward mean/std) handles the offset instead.
            mods.append(nn.Linear(dims[i], dims[i + 1], bias=i < cfg.layers - 1))
            if i < cfg.layers - 1:
                mods.append(ACTIVATIONS[cfg.activation]())
        self.mlp = nn.Sequential(*mods)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(N, hidden) -> (N,) rewards."""
        return self.mlp(h).squeeze(-1)
