"""The hybrid reward of the paper (docs/recipe.md §12) and the answer matchers it plugs in.

    R(y) = 1                      if y matches the ground truth (the rule)
           sigmoid(BaseReward(y)) otherwise (the reward model, consulted only when the rule fails)

Matchers take `(completion, ground_truth) -> bool`; a ground truth may be a list of acceptable answers:
- `exact`: the stripped strings are equal;
- `normalized`: equal after lower-casing, dropping punctuation, articles and extra spaces, comparing the final
  answer (`\\boxed{...}`, or the text after the last "answer is" / "Answer:") or the whole completion;
- `choice`: the multiple-choice letter, e.g. "(B)", "B.", "Answer: B", "\\boxed{B}" against "B" or "(B) text".
Any callable with the same signature can be passed instead of a name.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from basereward.calibration import sigmoid

Matcher = Callable[[str, object], bool]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER_IS = re.compile(r"(?:answer\s*(?:is|:)|final answer\s*(?:is|:)?)\s*(.+)", re.IGNORECASE | re.DOTALL)
_LETTER_PATTERNS = (
    re.compile(r"\\boxed\{\s*\(?([A-Z])\)?\s*\}"),
    re.compile(r"answer\s*(?:is|:)?\s*\(?([A-Z])\)?(?![A-Za-z])", re.IGNORECASE),
    re.compile(r"\(([A-Z])\)"),
    re.compile(r"^\s*([A-Z])(?:[.):]|\s*$)"),  # "B." / "B)" / "B" alone, not the pronoun in "I think"
)


def normalize_text(s: str) -> str:
    s = s.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(_ARTICLES.sub(" ", s).split())


def extract_answer(text: str) -> str:
    """The final answer of a completion: the last \\boxed{...}, else the text after the last "answer is"/"Answer:",
    else the whole text."""
    boxed = _BOXED.findall(text)
    if boxed:
        return boxed[-1]
    found = [m.group(1).strip() for m in _ANSWER_IS.finditer(text)]
    return found[-1].splitlines()[0] if found and found[-1] else text


def _truths(truth) -> list[str]:
    return [str(t) for t in truth] if isinstance(truth, list | tuple) else [str(truth)]


def exact_match(completion: str, truth) -> bool:
    return any(completion.strip() == t.strip() for t in _truths(truth))


def normalized_match(completion: str, truth) -> bool:
    candidates = {normalize_text(extract_answer(completion)), normalize_text(completion)}
    return any(normalize_text(t) in candidates for t in _truths(truth) if normalize_text(t))


def choice_letter(text: str) -> str | None:
    for pattern in _LETTER_PATTERNS:
        m = pattern.search(text.strip())
        if m:
            return m.group(1).upper()
    return None


def choice_match(completion: str, truth) -> bool:
    letter = choice_letter(completion)
    return letter is not None and any(choice_letter(t) == letter for t in _truths(truth))


MATCHERS: dict[str, Matcher] = {"exact": exact_match, "normalized": normalized_match, "choice": choice_match}


def get_matcher(matcher: str | Matcher) -> Matcher:
    if callable(matcher):
        return matcher
    if matcher not in MATCHERS:
        raise ValueError(
            f"unknown matcher {matcher!r}; choose one of {', '.join(MATCHERS)} or pass a callable"
        )
    return MATCHERS[matcher]


@dataclass
class HybridScore:
    score: float  # the reward handed to the RL algorithm
    match: bool  # the rule fired
    raw: float  # the reward model's logit; NaN where the rule matched and the model was not consulted
    prob: float  # sigmoid(raw); NaN likewise


def hybrid_scores(
    completions: Sequence[str],
    truths: Sequence | None,
    raw_fn: Callable[[list[int]], list[float]],
    matcher: str | Matcher = "normalized",
    mode: str = "hybrid",
) -> list[HybridScore]:
    """Rewards for completions. `raw_fn(indices)` returns the reward model's raw logits for those completions; it
    is called once, for the completions the rule did not match (all of them when there is no ground truth).

    mode: `hybrid` (1 on a match else sigmoid(raw)), `prob` (sigmoid(raw)), `raw` (the logit), `rule` (1/0).
    An empty (or whitespace-only) completion is not sent to the reward model, which scores answers, not silence:
    it gets 0, the floor of the hybrid and prob scales (NaN in raw mode, which has no floor; TRL then skips it).
    """
    if mode not in ("hybrid", "prob", "raw", "rule"):
        raise ValueError(f"mode must be hybrid, prob, raw or rule, got {mode!r}")
    match_fn = get_matcher(matcher)
    matched = [
        truths is not None and truths[i] is not None and match_fn(c, truths[i])
        for i, c in enumerate(completions)
    ]
    empty = [not c.strip() for c in completions]
    ask = [
        i
        for i in range(len(completions))
        if not empty[i] and (mode in ("prob", "raw") or (mode == "hybrid" and not matched[i]))
    ]
    raws = dict(zip(ask, raw_fn(ask) if ask else []))
    out = []
    for i, m in enumerate(matched):
        raw = raws.get(i, math.nan)
        prob = sigmoid(raw) if i in raws else math.nan
        if empty[i]:
            score = {"hybrid": float(m), "prob": 0.0, "raw": math.nan, "rule": float(m)}[mode]
        else:
            score = {"hybrid": 1.0 if m else prob, "prob": prob, "raw": raw, "rule": float(m)}[mode]
        out.append(HybridScore(score, m, raw, prob))
    return out
