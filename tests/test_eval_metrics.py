"""The metric functions against hand-computed numbers and the published anchors of docs/benchmarks.md."""

import math

import pytest

from basereward.eval import metrics as M


def rewards(flags):
    """(pref, rej) giving each pair right (True), wrong (False) or a tie (None)."""
    pref = [1.0 if f else 0.0 if f is False else 0.5 for f in flags]
    return pref, [0.5 if f is None else 1.0 if f is False else 0.0 for f in flags]


def test_strict_rule_ties_and_nan_are_wrong():
    correct, ties = M.judge([2.0, 1.0, 1.0, math.nan, 0.0], [1.0, 1.0, 2.0, 0.0, math.nan])
    assert correct == [True, False, False, False, False]
    assert ties == [False, True, False, False, False]
    t = M.total(correct, ties)
    assert (t.correct, t.n, t.ties, t.accuracy) == (1, 5, 1, 20.0)
    assert M.Tally().accuracy is None


def test_vlrb_overall_macro_and_pair_keys():
    groups = ["general", "general", "hallucination", "reasoning", "reasoning", "reasoning"]
    pref, rej = rewards([True, None, True, False, True, True])
    keys = ["a", "b", "c", "d", "e", "e"]  # the last row repeats a pair key: counted once
    res = M.vl_rewardbench(pref, rej, groups, keys)
    h = res.headline
    assert (h["general"], h["hallucination"], h["reasoning"]) == (50.0, 100.0, 50.0)
    assert h["overall"] == 100.0 * 3 / 5
    assert h["macro"] == (50.0 + 100.0 + 50.0) / 3
    assert (h["n"], h["ties"]) == (5, 1)
    assert res.extra["duplicate_pair_keys"] == 1
    assert M.vl_rewardbench(pref, rej, groups).headline["n"] == 6  # without keys every row counts
    assert M.vl_rewardbench(pref[:2], rej[:2], groups[:2]).headline["macro"] is None  # a group with no pairs


def _vlrb_counts(spec):
    """groups/flags for {group: (right, n)}."""
    groups, flags = [], []
    for g, (right, n) in spec.items():
        groups += [g] * n
        flags += [True] * right + [False] * (n - right)
    return groups, *rewards(flags)


@pytest.mark.parametrize(
    ("spec", "overall", "macro"),
    [
        # IXC-2.5-Reward on the official split: 823/1250 = 65.8 overall, macro 70.0 (docs/benchmarks.md §2.6)
        ({"general": (155, 183), "hallucination": (468, 749), "reasoning": (200, 318)}, 65.84, 70.0),
        # UnifiedReward-Think, POVID counted in General: 922/1250 = 73.8, macro 72.3
        ({"general": (493, 631), "hallucination": (219, 301), "reasoning": (210, 318)}, 73.76, 72.3),
        # R1-Reward's own map: 63.84 / 85.71 / 64.78 -> 71.92 exactly, macro 71.44
        ({"general": (309, 484), "hallucination": (384, 448), "reasoning": (206, 318)}, 71.92, 71.44),
    ],
)
def test_vlrb_published_anchors(spec, overall, macro):
    groups, pref, rej = _vlrb_counts(spec)
    h = M.vl_rewardbench(pref, rej, groups).headline
    assert round(h["overall"], 2) == overall
    # published macros are means of already-rounded group numbers (R1-Reward: (63.84 + 85.71 + 64.78) / 3 = 71.44,
    # the unrounded mean is 71.446), so they agree to the rounding, not to the last digit
    assert h["macro"] == pytest.approx(macro, abs=0.05)


def test_vlrb_always_first_anchor_on_the_documented_composition():
    """1,250 rows, 183/749/318, the 5 rows stored preferred-second all in General: a judge that always picks the
    stored first response scores 99.60 overall / 99.09 macro (G 97.27, H 100, R 100)."""
    groups = ["general"] * 183 + ["hallucination"] * 749 + ["reasoning"] * 318
    first_is_preferred = [i >= 5 for i in range(1250)]  # rows 0-4: human_ranking [1, 0], all general
    pref = [1.0 if f else 0.0 for f in first_is_preferred]  # reward 1 to the stored-first response
    rej = [0.0 if f else 1.0 for f in first_is_preferred]
    h = M.vl_rewardbench(pref, rej, groups).headline
    assert (round(h["overall"], 2), round(h["macro"], 2), round(h["general"], 2)) == (99.60, 99.09, 97.27)
    assert h["hallucination"] == h["reasoning"] == 100.0


def test_mmrb_pools_safety_and_reasoning_and_averages_seven_columns():
    buckets = [
        "open_generation/correctness_task",
        "open_generation/preference_task",
        "knowledge",
        "reasoning/math",
        "reasoning/coding",
        "reasoning/coding",
        "safety/bias",
        "safety/toxicity",
        "vqa",
        "vqa",
    ]
    pref, rej = rewards([True, False, True, True, None, True, True, False, True, False])
    res = M.multimodal_rewardbench(pref, rej, buckets)
    h = res.headline
    assert h["overall"] == 100.0 * 6 / 10 and h["ties"] == 1 and h["n"] == 10
    assert (h["reasoning_math"], h["reasoning_coding"], h["reasoning"]) == (100.0, 50.0, 100.0 * 2 / 3)
    assert h["safety"] == 50.0 and res.categories["safety/bias"].accuracy == 100.0
    cols = [100.0, 0.0, 100.0, 100.0, 50.0, 50.0, 50.0]
    assert h["mean7"] == sum(cols) / 7
    assert M.multimodal_rewardbench(pref[:3], rej[:3], buckets[:3]).headline["mean7"] is None
    # GPT-4o's paper-style row: (62.6+69.0+72.0+67.6+62.1+74.8+87.2)/7 = 70.8
    assert round(M.mean_or_none([62.6, 69.0, 72.0, 67.6, 62.1, 74.8, 87.2]), 1) == 70.8


def test_mmrlhf_acc_plus_per_query_and_category():
    groups = ["q1", "q1", "q2", "q3", "q3", "q4", "q5"]
    cats = ["mcq", "mcq", "mcq", "long", "long", "video", None]
    pref, rej = rewards([True, True, False, True, None, True, True])
    res = M.mm_rlhf_rewardbench(pref, rej, groups, cats)
    h = res.headline
    assert h["acc"] == 100.0 * 5 / 7 and h["ties"] == 1
    assert h["acc_plus"] == 100.0 * 3 / 5  # q1, q4, q5 all right; q2 wrong; q3 has a tie
    assert (h["mcq"], h["long"], h["video"], h["short"]) == (200 / 3, 50.0, 100.0, None)
    assert (h["n_pairs"], h["n_queries"]) == (7, 5)
    assert res.extra["acc_plus_by_category"] == {
        "mcq": 50.0,
        "long": 0.0,
        "short": None,
        "safety": None,
        "video": 100.0,
    }
    assert res.extra["uncategorised_pairs"] == 1


def test_mmrlhf_mixed_category_id_is_credited_to_the_first_keyword():
    # the official script credits an all-right id to the first of mcq/long/short/safety/video among its rows,
    # while every category it touches counts it in the denominator
    res = M.mm_rlhf_rewardbench([1.0, 1.0], [0.0, 0.0], ["q", "q"], ["video", "long"])
    assert res.extra["acc_plus_by_category"]["long"] == 100.0
    assert res.extra["acc_plus_by_category"]["video"] == 0.0


def test_mmrlhf_per_category_acc_plus_counts_every_keyword_in_any_path_as_the_official_script():
    """cal_performance_mmreweard_bench.py: an id counts in the acc+ denominator of every keyword found anywhere in
    any of its paths, and an all-right id is credited to the first keyword found. Id x's second image lives under
    mcq/ but its name holds "short": x counts for short's acc+ (1 of 2 ids there right: y), though neither of its
    pairs is a short pair."""
    groups, cats = ["x", "x", "y"], ["mcq", "mcq", "short"]
    paths = ["mcq/a.jpg", "mcq/shortcut_b.jpg", "short/c.jpg"]
    pref, rej = rewards([True, True, False])
    res = M.mm_rlhf_rewardbench(pref, rej, groups, cats, paths)
    plus = res.extra["acc_plus_by_category"]
    assert (plus["mcq"], plus["short"]) == (
        100.0,
        0.0,
    )  # x right: credited to mcq; short: x and y, 0 credited
    assert res.extra["queries_by_category"] == {"mcq": 1, "long": 0, "short": 2, "safety": 0, "video": 0}
    assert (res.headline["short"], res.headline["acc_plus"]) == (
        0.0,
        50.0,
    )  # pair accuracy by category: y only
    # without the paths, only the rows' categories count: short's denominator is y alone
    assert M.mm_rlhf_rewardbench(pref, rej, groups, cats).extra["queries_by_category"]["short"] == 1


@pytest.mark.parametrize(
    "ties, accuracy, n",
    [("wrong", 25.0, 4), ("half", 50.0, 4), ("drop", 50.0, 2)],
)
def test_tie_policies_credit_a_tie_zero_half_or_drop_it(ties, accuracy, n):
    # right, tie, wrong, tie: wrong 1/4; half (1 + 0.5 + 0 + 0.5)/4; drop 1/2 over the two decided pairs
    pref, rej = [1.0, 2.0, 3.0, 1.0], [0.0, 2.0, 4.0, 1.0]
    res = M.pairs_accuracy(pref, rej, ["a", "a", "b", "b"], ties)
    assert res.headline == {"accuracy": accuracy, "n": n, "ties": 2}
    assert res.categories["b"].accuracy == {"wrong": 0.0, "half": 25.0, "drop": 0.0}[ties]
    assert res.categories["b"].n == {"wrong": 2, "half": 2, "drop": 1}[ties]


def test_tie_policy_in_acc_plus_and_the_rm_bench_matrix():
    # MM-RLHF: id a = [tie, right], b = [right, right], c = [tie]
    groups, cats = ["a", "a", "b", "b", "c"], ["mcq"] * 5
    pref, rej = [1.0, 1.0, 1.0, 1.0, 2.0], [1.0, 0.0, 0.0, 0.0, 2.0]
    plus = {
        t: M.mm_rlhf_rewardbench(pref, rej, groups, cats, ties=t).headline for t in ("wrong", "half", "drop")
    }
    assert plus["wrong"]["acc_plus"] == 100.0 / 3  # b only
    assert plus["half"]["acc_plus"] == 100.0 * (0.5 + 1 + 0.5) / 3  # a coin per tie: P(all right)
    assert plus["drop"]["acc_plus"] == 100.0 and plus["drop"]["n_queries"] == 2  # c has no pair left
    assert (plus["drop"]["acc"], plus["drop"]["n_pairs"], plus["drop"]["ties"]) == (100.0, 3, 2)
    # RM-Bench, the spec's worked example: cell [0][0] is right for prompt A and a tie (1.0 vs 1.0) for B
    from basereward.eval.text_metrics import rm_bench

    chosen = {"A": [2.0, 3.0, 3.5], "B": [1.0, 1.0, 2.0]}
    rejected = {"A": [1.0, 2.5, 4.0], "B": [1.0, 0.5, 0.5]}
    rows = [(g, i, j) for g in "AB" for i in range(3) for j in range(3)]
    args = (
        [chosen[g][i] for g, i, _ in rows],
        [rejected[g][j] for g, _, j in rows],
        ["chat"] * len(rows),
        [i for _, i, _ in rows],
        [j for _, _, j in rows],
        [g for g, _, _ in rows],
    )
    cell = {
        t: rm_bench(*args, ties=t).extra["per_domain"]["chat"]["matrix"][0][0]
        for t in ("wrong", "half", "drop")
    }
    assert cell == {"wrong": 50.0, "half": 75.0, "drop": 100.0}
    with pytest.raises(ValueError, match="unknown tie policy 'coin'"):
        M.pairs_accuracy(pref, rej, cats, "coin")


def test_mmrlhf_published_denominators():
    """R1-Reward 80.59 = 137/170 and 54.35 = 25/46 on the documented 170 pairs / 46 ids."""
    layout = {"mcq": (42, 10), "long": (37, 10), "short": (34, 10), "safety": (32, 6), "video": (25, 10)}
    groups, cats = [], []
    for cat, (n_pairs, n_ids) in layout.items():
        for i in range(n_pairs):
            groups.append(f"{cat}-{i % n_ids}")
            cats.append(cat)
    wrong_ids = sorted(set(groups))[
        :21
    ]  # 46 - 25 ids get one wrong pair each, then 12 more wrong pairs in them
    flags = [True] * len(groups)
    for gid in wrong_ids:
        flags[groups.index(gid)] = False
    extra = [i for i, g in enumerate(groups) if g in wrong_ids and flags[i]][:12]
    for i in extra:
        flags[i] = False
    h = M.mm_rlhf_rewardbench(*rewards(flags), groups, cats).headline
    assert (h["n_pairs"], h["n_queries"]) == (170, 46)
    assert (round(h["acc"], 2), round(h["acc_plus"], 2)) == (80.59, 54.35)


def test_pairs_accuracy_by_category():
    res = M.pairs_accuracy(*rewards([True, False, None]), ["a", "a", "b"])
    assert res.headline == {"accuracy": 100.0 / 3, "n": 3, "ties": 1}
    assert res.categories["a"] == M.Tally(1, 2, 0)


def test_correlations_against_hand_values():
    assert M.pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert M.pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert M.ranks([10, 20, 20, 30]) == [1.0, 2.5, 2.5, 4.0]
    assert M.spearman([1, 2, 3, 4], [1, 4, 9, 100]) == pytest.approx(1.0)
    assert M.pearson([1, 2, 3, 4], [1, 4, 9, 100]) < 0.9
    # ties: ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4] -> r = 4.5 / sqrt(4.5 * 5)
    assert M.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert M.pearson([1, 1, 1], [1, 2, 3]) is None and M.pearson([1], [1]) is None
    assert M.spearman([1, math.nan], [1, 2]) is None
