"""The official benchmark metrics as pure functions of rewards and labels (docs/benchmarks.md §2.4, 3.3,
4.3 and 5).

A pair is right iff reward(preferred) > reward(rejected), strictly; a NaN reward is wrong (every comparison with
NaN is False); a tie (equal rewards) is counted in `ties` and credited by the tie policy (basereward.eval.tally:
wrong by default, half, or dropped). Accuracies are percentages (0-100),
unrounded, and None where a category has no pairs. Each benchmark function returns a `Result` whose `headline`
holds exactly the keys `basereward eval` prints, and whose `categories` holds the counts behind them.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

from basereward.eval.tally import Result, Tally, judge, mean_or_none, tally_by, total
from basereward.eval.text_metrics import rewardbench, rm_bench


def _acc(cats: dict[str, Tally], name: str) -> float | None:
    return cats.get(name, Tally()).accuracy


# --- VL-RewardBench -------------------------------------------------------------------------------------------


def vl_rewardbench(
    pref: Sequence[float],
    rej: Sequence[float],
    groups: Sequence[str],
    keys: Sequence[Hashable] | None = None,
    ties: str = "wrong",
) -> Result:
    """Overall = micro accuracy over pairs; macro = mean of the general / hallucination / reasoning accuracies.

    `keys` are the pair keys (id, query, sorted responses): rows sharing a key are one pair, counted once (the
    first), as the official cal.py groups them. Ids alone are not keys (25 ids repeat with different pairs).
    """
    keep = range(len(pref))
    if keys is not None:
        first: dict[Hashable, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        keep = sorted(first.values())
    pref, rej, groups = [pref[i] for i in keep], [rej[i] for i in keep], [groups[i] for i in keep]
    credits, tie = judge(pref, rej, ties)
    cats = tally_by(credits, tie, groups)
    all_ = total(credits, tie)
    per = {g: _acc(cats, g) for g in ("general", "hallucination", "reasoning")}
    headline = {
        "overall": all_.accuracy,
        "macro": mean_or_none(list(per.values())),
        **per,
        "n": all_.n,
        "ties": all_.ties,
    }
    duplicates = 0 if keys is None else len(keys) - len(keep)
    return Result(headline, cats, {"duplicate_pair_keys": duplicates})


# --- Multimodal RewardBench -----------------------------------------------------------------------------------

# headline key -> official bucket (2_get_accuracy.py); the 7 columns RM papers average, in their order.
MMRB_COLUMNS = {
    "general_correctness": "open_generation/correctness_task",
    "general_preference": "open_generation/preference_task",
    "knowledge": "knowledge",
    "reasoning_math": "reasoning/math",
    "reasoning_coding": "reasoning/coding",
    "safety": "safety",
    "vqa": "vqa",
}


def multimodal_rewardbench(
    pref: Sequence[float], rej: Sequence[float], buckets: Sequence[str], ties: str = "wrong"
) -> Result:
    """Overall = micro accuracy over all rows (the official README); mean7 = unweighted mean of the 7 columns
    (Correctness, Preference, Knowledge, Math, Coding, Safety, VQA) that RM papers call "Overall".
    Safety is micro over bias + toxicity (only bias is released); Reasoning (README) is micro over math + coding."""
    credits, tie = judge(pref, rej, ties)
    cats = tally_by(credits, tie, buckets)
    # README columns that pool two buckets
    for pooled in ("safety", "reasoning"):
        parts = [t for name, t in cats.items() if name.startswith(pooled + "/")]
        if parts:
            cats[pooled] = Tally(
                sum(t.correct for t in parts), sum(t.n for t in parts), sum(t.ties for t in parts)
            )
    all_ = total(credits, tie)
    cols = {key: _acc(cats, bucket) for key, bucket in MMRB_COLUMNS.items()}
    headline = {
        "overall": all_.accuracy,
        "mean7": mean_or_none(list(cols.values())),
        **cols,
        "reasoning": _acc(cats, "reasoning"),
        "n": all_.n,
        "ties": all_.ties,
    }
    return Result(headline, cats)


# --- MM-RLHF-RewardBench --------------------------------------------------------------------------------------

MMRLHF_CATEGORIES = ("mcq", "long", "short", "safety", "video")


def mm_rlhf_rewardbench(
    pref: Sequence[float],
    rej: Sequence[float],
    groups: Sequence[str],
    categories: Sequence[str | None],
    paths: Sequence[str] | None = None,
    ties: str = "wrong",
) -> Result:
    """acc = correct pairs / pairs; acc_plus = share of query ids whose every pair is right. Per category, as
    `cal_performance_mmreweard_bench.py` counts: pair accuracy over the rows whose category (the first keyword in
    the path) it is; acc+ over the ids with the keyword anywhere in any of their media `paths` (so one id may
    count for several categories), an all-right id credited to the first keyword, in mcq/long/short/safety/video
    order, found in its paths. Without `paths` a row's only keyword is its category.

    Under the half policy an id's credit is the product of its pairs' credits (the chance that a fair coin on
    each tie makes every pair right); under drop its tied pairs leave it, and an id left with none leaves acc+."""
    credits, tie = judge(pref, rej, ties)
    cats = tally_by(credits, tie, categories)
    all_ = total(credits, tie)
    rows_of: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        rows_of.setdefault(g, []).append(i)
    keywords = [
        {k for k in MMRLHF_CATEGORIES if k in paths[i]} if paths is not None else {categories[i]} - {None}
        for i in range(len(groups))
    ]
    id_credit: dict[str, float] = {}
    plus_num = dict.fromkeys(MMRLHF_CATEGORIES, 0.0)
    plus_den = dict.fromkeys(MMRLHF_CATEGORIES, 0)
    for g, rows in rows_of.items():
        kept = [credits[i] for i in rows if credits[i] is not None]
        if not kept:
            continue
        id_credit[g] = math.prod(kept)
        present = [k for k in MMRLHF_CATEGORIES if any(k in keywords[i] for i in rows)]
        for k in present:
            plus_den[k] += 1
        if present:
            plus_num[present[0]] += id_credit[g]
    right = sum(id_credit.values())
    headline = {
        "acc": all_.accuracy,
        "acc_plus": 100.0 * right / len(id_credit) if id_credit else None,
        **{c: _acc(cats, c) for c in MMRLHF_CATEGORIES},
        "n_pairs": all_.n,
        "n_queries": len(id_credit),
        "ties": all_.ties,
    }
    acc_plus = {c: (100.0 * plus_num[c] / plus_den[c] if plus_den[c] else None) for c in MMRLHF_CATEGORIES}
    extra = {
        "acc_plus_by_category": acc_plus,
        "queries_all_right": right,
        "queries_by_category": plus_den,
        "uncategorised_pairs": sum(c is None for c in categories),
    }
    return Result(headline, cats, extra)


# --- our pair JSONL -------------------------------------------------------------------------------------------


def pairs_accuracy(
    pref: Sequence[float], rej: Sequence[float], categories: Sequence[str | None], ties: str = "wrong"
) -> Result:
    credits, tie = judge(pref, rej, ties)
    all_ = total(credits, tie)
    return Result(
        {"accuracy": all_.accuracy, "n": all_.n, "ties": all_.ties}, tally_by(credits, tie, categories)
    )


# --- correlations (reward vs response length) -----------------------------------------------------------------


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson r; None when undefined (fewer than 2 points, a constant series, or non-finite values)."""
    n = len(x)
    if n != len(y):
        raise ValueError("x and y differ in length")
    if n < 2 or not all(math.isfinite(v) for v in (*x, *y)):
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def ranks(x: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank (what Spearman's rho needs)."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    out = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rho = Pearson r of the (tie-averaged) ranks."""
    if len(x) != len(y):
        raise ValueError("x and y differ in length")
    if not all(math.isfinite(v) for v in (*x, *y)):
        return None
    return pearson(ranks(x), ranks(y))


# --- pairs from a loader -> the benchmark's metrics ------------------------------------------------------------


def benchmark_result(
    benchmark: str,
    pairs: Sequence,
    pref: Sequence[float],
    rej: Sequence[float],
    category_map: str = "official",
    ties: str = "wrong",
) -> Result:
    """The metrics of `benchmark` for loader pairs (`basereward.data.benchmarks`) and their rewards; reads only
    the labels the loaders put in `meta`. `category_map` picks the VL-RewardBench grouping, `ties` the tie policy
    (basereward.eval.tally)."""
    if benchmark == "vl-rewardbench":
        groups = [p.meta["category_by_map"][category_map] for p in pairs]
        return vl_rewardbench(pref, rej, groups, [p.meta["pair_key"] for p in pairs], ties)
    if benchmark == "multimodal-rewardbench":
        return multimodal_rewardbench(pref, rej, [p.meta["category"] for p in pairs], ties)
    if benchmark == "mm-rlhf-rewardbench":
        meta = [p.meta for p in pairs]
        groups, categories = [m["group"] for m in meta], [m["category"] for m in meta]
        return mm_rlhf_rewardbench(pref, rej, groups, categories, [m["media_path"] for m in meta], ties)
    if benchmark == "rewardbench":
        return rewardbench(pref, rej, [p.meta["category"] for p in pairs], ties)
    if benchmark == "rm-bench":
        meta = [p.meta for p in pairs]
        styles = [m["chosen_style"] for m in meta], [m["rejected_style"] for m in meta]
        return rm_bench(pref, rej, [m["domain"] for m in meta], *styles, [m["group"] for m in meta], ties)
    if benchmark == "pairs":
        return pairs_accuracy(pref, rej, [p.meta.get("category") for p in pairs], ties)
    raise ValueError(f"unknown benchmark {benchmark!r}")
