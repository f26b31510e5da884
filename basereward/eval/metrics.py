"""The official benchmark metrics as pure functions of rewards and labels (docs/benchmarks.md §2.4, 3.3,
4.3 and 5).

A pair is right iff reward(preferred) > reward(rejected), strictly: a tie (equal rewards) is wrong and counted in
`ties`; a NaN reward is wrong too (every comparison with NaN is False). Accuracies are percentages (0-100),
unrounded, and None where a category has no pairs. Each benchmark function returns a `Result` whose `headline`
holds exactly the keys `basereward eval` prints, and whose `categories` holds the counts behind them.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Tally:
    correct: int = 0
    n: int = 0
    ties: int = 0

    @property
    def accuracy(self) -> float | None:
        return 100.0 * self.correct / self.n if self.n else None

    def add(self, correct: bool, tie: bool) -> Tally:
        return Tally(self.correct + int(correct), self.n + 1, self.ties + int(tie))

    def as_dict(self) -> dict:
        return {"accuracy": self.accuracy, "correct": self.correct, "n": self.n, "ties": self.ties}


@dataclass
class Result:
    headline: dict[str, float | int | None]
    categories: dict[str, Tally] = field(default_factory=dict)
    # counts that explain a number (duplicates, acc+ per category)
    extra: dict[str, object] = field(default_factory=dict)


def judge(pref: Sequence[float], rej: Sequence[float]) -> tuple[list[bool], list[bool]]:
    """(correct, tie) per pair under the strict rule."""
    if len(pref) != len(rej):
        raise ValueError(f"{len(pref)} preferred rewards but {len(rej)} rejected")
    return [p > r for p, r in zip(pref, rej)], [p == r for p, r in zip(pref, rej)]


def tally_by(correct: Sequence[bool], ties: Sequence[bool], labels: Sequence[str | None]) -> dict[str, Tally]:
    """Per-label tallies; pairs labelled None belong to no category (they still count in the totals)."""
    out: dict[str, Tally] = {}
    for c, t, label in zip(correct, ties, labels):
        if label is not None:
            out[label] = out.get(label, Tally()).add(c, t)
    return out


def total(correct: Sequence[bool], ties: Sequence[bool]) -> Tally:
    return Tally(sum(map(bool, correct)), len(correct), sum(map(bool, ties)))


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """Unweighted mean, defined only when every column has pairs (a mean over fewer columns is another number)."""
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)


def _acc(cats: dict[str, Tally], name: str) -> float | None:
    return cats.get(name, Tally()).accuracy


# --- VL-RewardBench -------------------------------------------------------------------------------------------


def vl_rewardbench(
    pref: Sequence[float], rej: Sequence[float], groups: Sequence[str], keys: Sequence[Hashable] | None = None
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
    correct, ties = judge(pref, rej)
    cats = tally_by(correct, ties, groups)
    all_ = total(correct, ties)
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


def multimodal_rewardbench(pref: Sequence[float], rej: Sequence[float], buckets: Sequence[str]) -> Result:
    """Overall = micro accuracy over all rows (the official README); mean7 = unweighted mean of the 7 columns
    (Correctness, Preference, Knowledge, Math, Coding, Safety, VQA) that RM papers call "Overall".
    Safety is micro over bias + toxicity (only bias is released); Reasoning (README) is micro over math + coding."""
    correct, ties = judge(pref, rej)
    cats = tally_by(correct, ties, buckets)
    # README columns that pool two buckets
    for pooled in ("safety", "reasoning"):
        parts = [t for name, t in cats.items() if name.startswith(pooled + "/")]
        if parts:
            cats[pooled] = Tally(
                sum(t.correct for t in parts), sum(t.n for t in parts), sum(t.ties for t in parts)
            )
    all_ = total(correct, ties)
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
    pref: Sequence[float], rej: Sequence[float], groups: Sequence[str], categories: Sequence[str | None]
) -> Result:
    """acc = correct pairs / pairs; acc_plus = share of query ids whose every pair is right. Per category: pair
    accuracy, and acc+ over the ids having a row in it; an all-right id is credited to the first category (in
    mcq/long/short/safety/video order) among its rows, as the official script does."""
    correct, ties = judge(pref, rej)
    cats = tally_by(correct, ties, categories)
    all_ = total(correct, ties)
    by_id: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_id.setdefault(g, []).append(i)
    all_right = {g for g, rows in by_id.items() if all(correct[i] for i in rows)}
    plus_num = dict.fromkeys(MMRLHF_CATEGORIES, 0)
    plus_den = dict.fromkeys(MMRLHF_CATEGORIES, 0)
    for g, rows in by_id.items():
        present = [c for c in MMRLHF_CATEGORIES if any(categories[i] == c for i in rows)]
        for c in present:
            plus_den[c] += 1
        if g in all_right and present:
            plus_num[present[0]] += 1
    headline = {
        "acc": all_.accuracy,
        "acc_plus": 100.0 * len(all_right) / len(by_id) if by_id else None,
        **{c: _acc(cats, c) for c in MMRLHF_CATEGORIES},
        "n_pairs": all_.n,
        "n_queries": len(by_id),
        "ties": all_.ties,
    }
    acc_plus = {c: (100.0 * plus_num[c] / plus_den[c] if plus_den[c] else None) for c in MMRLHF_CATEGORIES}
    extra = {
        "acc_plus_by_category": acc_plus,
        "queries_all_right": len(all_right),
        "queries_by_category": plus_den,
        "uncategorised_pairs": sum(c is None for c in categories),
    }
    return Result(headline, cats, extra)


# --- our pair JSONL -------------------------------------------------------------------------------------------


def pairs_accuracy(pref: Sequence[float], rej: Sequence[float], categories: Sequence[str | None]) -> Result:
    correct, ties = judge(pref, rej)
    all_ = total(correct, ties)
    return Result(
        {"accuracy": all_.accuracy, "n": all_.n, "ties": all_.ties}, tally_by(correct, ties, categories)
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
) -> Result:
    """The metrics of `benchmark` for loader pairs (`basereward.data.benchmarks`) and their rewards; reads only
    the labels the loaders put in `meta`. `category_map` picks the VL-RewardBench grouping."""
    if benchmark == "vl-rewardbench":
        groups = [p.meta["category_by_map"][category_map] for p in pairs]
        return vl_rewardbench(pref, rej, groups, [p.meta["pair_key"] for p in pairs])
    if benchmark == "multimodal-rewardbench":
        return multimodal_rewardbench(pref, rej, [p.meta["category"] for p in pairs])
    if benchmark == "mm-rlhf-rewardbench":
        return mm_rlhf_rewardbench(
            pref, rej, [p.meta["group"] for p in pairs], [p.meta["category"] for p in pairs]
        )
    if benchmark == "pairs":
        return pairs_accuracy(pref, rej, [p.meta.get("category") for p in pairs])
    raise ValueError(f"unknown benchmark {benchmark!r}")
