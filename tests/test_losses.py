"""Losses against hand-computed numbers."""

import math

import pytest
import torch

from basereward.losses import bradley_terry, length_normalize, pair_loss, zero_mean_penalty


def sp(x):  # -log sigmoid(x) = log(1 + exp(-x))
    return math.log1p(math.exp(-x))


def test_bradley_terry_hand_numbers():
    rc = torch.tensor([2.0, 0.5, -1.0])
    rr = torch.tensor([1.0, 1.5, -1.0])
    expected = (sp(1.0) + sp(-1.0) + sp(0.0)) / 3
    assert bradley_terry(rc, rr).item() == pytest.approx(expected, abs=1e-7)
    assert sp(0.0) == pytest.approx(math.log(2))


def test_bradley_terry_margin():
    rc, rr, m = torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([0.25])
    assert bradley_terry(rc, rr, m).item() == pytest.approx(sp(0.75), abs=1e-7)


def test_zero_mean_penalty():
    rc, rr = torch.tensor([1.0, -3.0]), torch.tensor([2.0, 1.0])
    # mean((3)^2, (-2)^2) = 6.5
    assert zero_mean_penalty(rc, rr, 0.1).item() == pytest.approx(0.65, abs=1e-7)


def test_length_normalize():
    r = torch.tensor([2.0, 3.0])
    n = torch.tensor([1, 9])
    out = length_normalize(r, n)
    assert out.tolist() == pytest.approx([2.0 / math.log(2), 3.0 / math.log(10)], abs=1e-6)


def test_pair_loss_composes_and_defaults_to_plain_bt():
    rc, rr = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    loss, parts = pair_loss(rc, rr)
    assert loss.item() == pytest.approx((sp(1.0) + sp(-2.0)) / 2, abs=1e-7)
    assert set(parts) == {"loss_bt"}
    lc, lr_ = torch.tensor([3, 1]), torch.tensor([1, 3])
    loss2, parts2 = pair_loss(rc, rr, center_coef=0.5, len_chosen=lc, len_rejected=lr_)
    nc = [1.0 / math.log(4), 0.0]
    nr = [0.0, 2.0 / math.log(4)]
    bt = (sp(nc[0] - nr[0]) + sp(nc[1] - nr[1])) / 2
    zm = 0.5 * ((nc[0] + nr[0]) ** 2 + (nc[1] + nr[1]) ** 2) / 2
    assert loss2.item() == pytest.approx(bt + zm, abs=1e-6)
    assert parts2["loss_zero_mean"] == pytest.approx(zm, abs=1e-6)
