"""One sigmoid and one normalisation for every caller (server, score, RL rewards), stable at any reward."""

import math

import pytest

from basereward.calibration import normalize, sigmoid


def test_sigmoid_matches_the_definition_and_never_overflows():
    for x in (-30.0, -2.5, -1e-3, 0.0, 1e-3, 2.5, 30.0):
        assert sigmoid(x) == pytest.approx(1.0 / (1.0 + math.exp(-x)), rel=1e-15)
    assert sigmoid(-1000.0) == 0.0 and sigmoid(1000.0) == 1.0  # math.exp(1000) would raise OverflowError
    assert sigmoid(3.0) + sigmoid(-3.0) == pytest.approx(1.0, abs=1e-15)


def test_every_caller_uses_the_same_function():
    from basereward.rl import rewards
    from basereward.scoring import RewardScorer

    assert RewardScorer.sigmoid is sigmoid and rewards.sigmoid is sigmoid
    assert RewardScorer.sigmoid(-800.0) == 0.0  # it used to raise OverflowError here


def test_normalize_uses_the_validation_statistics():
    assert normalize(3.0, {"mean": 1.0, "std": 0.5}) == 4.0
    assert normalize(3.0, None) == 3.0 and normalize(3.0, {"mean": 1.0, "std": 0.0}) == 2.0  # std 0: unscaled
