"""What every benchmark metric is built from: the pair rule, the tie policy and the counts behind an accuracy.

A pair is right iff reward(preferred) > reward(rejected), strictly; a NaN reward is wrong (every comparison with
NaN is False). A tie (equal rewards) is counted in `ties` and, by the tie policy (`basereward eval --ties`):

    wrong  credit 0 (the default): MM-RLHF-RewardBench's cal_performance script, RewardBench's run_rm.py and
           RM-Bench's scripts/utils.py all compare with a strict `>`, so this reproduces their official numbers.
    half   credit 0.5: RewardBench's generative-judge script (run_generative.py) scores a tie so, and it is the
           expected value of Multimodal RewardBench's seeded coin flip on an undecided pair.
    drop   left out of every denominator: VL-RewardBench's cal.py counts only decided (agree / reject) pairs.

`basereward.eval.metrics` (multimodal benchmarks, and the dispatch from loader pairs to every benchmark's metric)
and `basereward.eval.text_metrics` (RewardBench, RM-Bench) both return a `Result`; metrics imports text_metrics,
so what both build on lives here, below both (no import cycle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

TIE_POLICIES = ("wrong", "half", "drop")
TIE_CREDIT = {"wrong": 0.0, "half": 0.5, "drop": None}
# how each report words the policy
TIE_RULES = {
    "wrong": "ties count wrong",
    "half": "a tie counts half right",
    "drop": "ties are left out of the accuracies",
}


@dataclass(frozen=True)
class Tally:
    """`correct` sums the pairs' credits (a float under the half policy), `n` counts the pairs in the
    denominator (dropped ties are not), `ties` counts every tie, dropped or not."""

    correct: float = 0
    n: int = 0
    ties: int = 0

    @property
    def accuracy(self) -> float | None:
        return 100.0 * self.correct / self.n if self.n else None

    def add(self, credit: float | None, tie: bool) -> Tally:
        if credit is None:  # a dropped tie
            return Tally(self.correct, self.n, self.ties + int(tie))
        return Tally(self.correct + credit, self.n + 1, self.ties + int(tie))

    def as_dict(self) -> dict:
        return {"accuracy": self.accuracy, "correct": self.correct, "n": self.n, "ties": self.ties}


@dataclass
class Result:
    headline: dict[str, float | int | None]
    categories: dict[str, Tally] = field(default_factory=dict)
    # counts that explain a number (duplicates, acc+ per category)
    extra: dict[str, object] = field(default_factory=dict)


def judge(
    pref: Sequence[float], rej: Sequence[float], ties: str = "wrong"
) -> tuple[list[float | None], list[bool]]:
    """(credit, tie) per pair: credit 1.0 when right, 0.0 when wrong, and for a tie what the policy `ties` gives
    (None: dropped from the denominators)."""
    if len(pref) != len(rej):
        raise ValueError(f"{len(pref)} preferred rewards but {len(rej)} rejected")
    if ties not in TIE_CREDIT:
        raise ValueError(f"unknown tie policy {ties!r}; choose one of {', '.join(TIE_POLICIES)}")
    tie = [p == r for p, r in zip(pref, rej)]
    return [TIE_CREDIT[ties] if t else float(p > r) for p, r, t in zip(pref, rej, tie)], tie


def tally_by(
    credits: Sequence[float | None], ties: Sequence[bool], labels: Sequence[str | None]
) -> dict[str, Tally]:
    """Per-label tallies; pairs labelled None belong to no category (they still count in the totals)."""
    out: dict[str, Tally] = {}
    for c, t, label in zip(credits, ties, labels):
        if label is not None:
            out[label] = out.get(label, Tally()).add(c, t)
    return out


def total(credits: Sequence[float | None], ties: Sequence[bool]) -> Tally:
    kept = [c for c in credits if c is not None]
    return Tally(sum(kept), len(kept), sum(map(bool, ties)))


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """Unweighted mean, defined only when every column has pairs (a mean over fewer columns is another number)."""
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)
