"""The hybrid reward and its answer matchers, against hand-computed values."""

import math

import pytest

from basereward.rl.rewards import (
    choice_letter,
    choice_match,
    exact_match,
    extract_answer,
    get_matcher,
    hybrid_scores,
    normalized_match,
    sigmoid,
)


def test_exact_and_normalized():
    assert exact_match(" red ", "red") and not exact_match("Red", "red")
    assert normalized_match("The shape is RED!", "the shape is red")
    assert normalized_match("I think the answer is: Red.", "red")
    assert normalized_match("so \\boxed{12}", "12") and normalized_match("x", ["y", "X."])
    assert not normalized_match("The shape is blue.", "red") and not normalized_match("anything", "")
    assert extract_answer("a \\boxed{1} then \\boxed{2}") == "2"
    assert extract_answer("Answer: left\nbecause") == "left"


@pytest.mark.parametrize(
    "text,letter",
    [
        ("(B)", "B"),
        ("B. a cat", "B"),
        ("Answer: c", "C"),
        ("the answer is (D)", "D"),
        ("\\boxed{A}", "A"),
        ("I pick (C) here", "C"),
        ("no idea", None),
    ],
)
def test_choice_letters(text, letter):
    assert choice_letter(text) == letter


def test_choice_match():
    assert choice_match("The answer is (B).", "B") and choice_match("B", "(B) a dog")
    assert not choice_match("The answer is (A).", "B") and not choice_match("none", "B")


def test_get_matcher():
    assert get_matcher("exact") is exact_match
    custom = lambda c, t: True  # noqa: E731
    assert get_matcher(custom) is custom
    with pytest.raises(ValueError, match="unknown matcher"):
        get_matcher("fuzzy")


def test_hybrid_consults_the_model_only_when_the_rule_fails():
    asked = []

    def raw_fn(idx):
        asked.append(list(idx))
        return [0.0, 2.0][: len(idx)]

    out = hybrid_scores(["red", "blue", "green"], ["red", "red", None], raw_fn, "normalized")
    assert asked == [[1, 2]]
    assert [o.score for o in out] == [1.0, 0.5, pytest.approx(sigmoid(2.0))]
    assert [o.match for o in out] == [True, False, False]
    assert math.isnan(out[0].raw) and out[2].raw == 2.0
    # other modes
    assert [o.score for o in hybrid_scores(["red"], ["red"], lambda i: [3.0], mode="raw")] == [3.0]
    assert [o.score for o in hybrid_scores(["red"], ["red"], lambda i: [0.0], mode="prob")] == [0.5]
    assert [o.score for o in hybrid_scores(["red", "x"], ["red", "red"], lambda i: 1 / 0, mode="rule")] == [
        1.0,
        0.0,
    ]
    assert [o.score for o in hybrid_scores(["a"], None, lambda i: [0.0])] == [0.5]  # no ground truth: sigmoid
    assert sigmoid(-800.0) == 0.0 and sigmoid(800.0) == 1.0  # no overflow


def test_empty_completions_get_the_floor_without_the_model():
    asked = []

    def raw_fn(idx):
        asked.append(list(idx))
        return [1.0] * len(idx)

    out = hybrid_scores(["", "  \n", "red", "blue"], ["red", "", "red", "red"], raw_fn)
    assert asked == [[3]]
    assert [o.score for o in out] == [0.0, 0.0, 1.0, pytest.approx(sigmoid(1.0))]
    assert hybrid_scores([""], None, raw_fn, mode="prob")[0].score == 0.0
    assert math.isnan(hybrid_scores([""], None, raw_fn, mode="raw")[0].score)
