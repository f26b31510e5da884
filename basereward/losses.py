"""Pairwise reward-model losses: pure functions of reward tensors (no model, no config objects).

The paper's final choice (BaseReward section 6) is plain Bradley-Terry; the zero-mean coefficient and log-length
normalisation are here to reproduce its ablation (Algorithm 1 / Figure 1) and are off by default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of -log sigmoid(r_c - r_r [- margin]). The margin form is Llama-2's: pairs with a larger labelled gap
    must be separated by more."""
    diff = r_chosen - r_rejected
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff).mean()


def zero_mean_penalty(r_chosen: torch.Tensor, r_rejected: torch.Tensor, coef: float) -> torch.Tensor:
    """coef * mean((r_c + r_r)^2): pulls rewards towards zero mean (TRL/ms-swift `center_rewards_coefficient`)."""
    return coef * ((r_chosen + r_rejected) ** 2).mean()


def length_normalize(rewards: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """r / log(len + 1), len = response length in tokens (including the scored token)."""
    return rewards / torch.log(lengths.to(rewards.dtype) + 1.0)


def pair_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    *,
    margin: torch.Tensor | None = None,
    center_coef: float = 0.0,
    len_chosen: torch.Tensor | None = None,
    len_rejected: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The configured loss: optional length normalisation, then BT (with optional margin), plus the optional
    zero-mean term. Returns (loss, components for logging)."""
    if len_chosen is not None and len_rejected is not None:
        r_chosen = length_normalize(r_chosen, len_chosen)
        r_rejected = length_normalize(r_rejected, len_rejected)
    bt = bradley_terry(r_chosen, r_rejected, margin)
    parts = {"loss_bt": float(bt.detach())}
    loss = bt
    if center_coef:
        zm = zero_mean_penalty(r_chosen, r_rejected, center_coef)
        parts["loss_zero_mean"] = float(zm.detach())
        loss = loss + zm
    return loss, parts


def pair_sums(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> list[float]:
    """A micro-batch's row of a training step's sums, for logging (no gradient): plain Bradley-Terry loss x n,
    pairs ranked right (a tie is wrong), margin x n, n."""
    c, r = r_chosen.detach().double().cpu(), r_rejected.detach().double().cpu()
    return [float(bradley_terry(c, r)) * len(c), float((c > r).sum()), float((c - r).sum()), len(c)]
