"""BaseReward as a TRL GRPO reward function, with the images (TRL's own model rewards are text-only).

    from basereward.rl.trl import make_reward_fn
    trainer = GRPOTrainer(model=..., reward_funcs=[make_reward_fn(model="runs/demo/train/final")], ...)

or the module-level `reward_fn` after `configure(model=... | url=...)` (or with BASEREWARD_MODEL / BASEREWARD_URL
set). TRL calls `reward_fn(prompts, completions, completion_ids, trainer_state, log_extra, log_metric,
**dataset_columns)`; the images come from the dataset's `images` (a list per row) or `image` column, exactly the
images the policy saw. With a ground-truth column (`solution`, `ground_truth` or `answer`) the reward is the
paper's hybrid: 1 if the completion matches, else sigmoid(BaseReward); without one it is sigmoid(BaseReward).
Completions sharing a prompt and image are scored with the prompt encoded once.
"""

from __future__ import annotations

import math
import os

from basereward.rl.client import get_scorer
from basereward.rl.rewards import Matcher, hybrid_scores
from basereward.rl.samples import completion_text, image_ref, prompt_messages, score_merged
from basereward.types import Sample

ANSWER_COLUMNS = ("solution", "ground_truth", "answer")


class RewardFunction:
    """A TRL reward callable over a scorer (in-process `RewardScorer` or `HttpScorer`)."""

    def __init__(
        self,
        scorer,
        *,
        matcher: str | Matcher = "normalized",
        mode: str = "hybrid",
        answer_columns: tuple[str, ...] = ANSWER_COLUMNS,
    ):
        self.scorer = scorer
        self.matcher = matcher
        self.mode = mode
        self.answer_columns = answer_columns
        self.__name__ = "basereward"  # TRL names the reward column after this

    def samples(self, prompts, completions, **columns) -> list[Sample]:
        """One one-response Sample per completion, images taken from the `images` / `image` column."""
        per_row = _images_per_row(len(prompts), columns)
        refs_cache: dict[int, object] = {}  # TRL repeats one PIL object per generation: encode it to PNG once
        out = []
        for i, (prompt, completion) in enumerate(zip(prompts, completions)):
            refs = []
            for k, img in enumerate(per_row[i]):
                if id(img) not in refs_cache:
                    refs_cache[id(img)] = image_ref(img, where=f"row {i} image {k}")
                refs.append(refs_cache[id(img)])
            out.append(Sample(prompt_messages(prompt, len(refs)), [completion_text(completion)], refs))
        return out

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        samples = self.samples(prompts, completions, **kwargs)
        truths = next((kwargs[c] for c in self.answer_columns if kwargs.get(c) is not None), None)
        mode = self.mode if truths is not None or self.mode != "hybrid" else "prob"

        def raw_fn(indices: list[int]) -> list[float]:
            return score_merged(self.scorer, [samples[i] for i in indices])

        scores = hybrid_scores([s.responses[0] for s in samples], truths, raw_fn, self.matcher, mode)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            raws = [s.raw for s in scores if not math.isnan(s.raw)]
            log_metric("basereward/match_rate", sum(s.match for s in scores) / max(len(scores), 1))
            if raws:
                log_metric("basereward/raw_mean", sum(raws) / len(raws))
        return [s.score for s in scores]


def _images_per_row(n: int, columns: dict) -> list[list]:
    if columns.get("images") is not None:
        rows = [list(x) if x is not None else [] for x in columns["images"]]
    elif columns.get("image") is not None:
        rows = [[x] if x is not None else [] for x in columns["image"]]
    else:
        rows = [[] for _ in range(n)]
    if len(rows) != n:
        raise ValueError(f"{len(rows)} image rows for {n} prompts")
    return rows


def make_reward_fn(
    model: str | None = None,
    url: str | None = None,
    *,
    scorer=None,
    matcher: str | Matcher = "normalized",
    mode: str = "hybrid",
    device: str | None = None,
) -> RewardFunction:
    """A reward function over a checkpoint directory (in-process), a server URL, or a ready scorer."""
    return RewardFunction(scorer or get_scorer(model, url, device=device), matcher=matcher, mode=mode)


_default: RewardFunction | None = None


def configure(model: str | None = None, url: str | None = None, **kwargs) -> RewardFunction:
    """Set what the module-level `reward_fn` scores with."""
    global _default
    _default = make_reward_fn(model, url, **kwargs)
    return _default


def reward_fn(prompts, completions, **kwargs) -> list[float]:
    """TRL reward function; configured by `configure(...)` or BASEREWARD_MODEL / BASEREWARD_URL."""
    if _default is None:
        model, url = os.environ.get("BASEREWARD_MODEL"), os.environ.get("BASEREWARD_URL")
        if not (model or url):
            raise RuntimeError(
                "basereward.rl.trl.reward_fn: call configure(model=... or url=...) first, or set "
                "BASEREWARD_MODEL / BASEREWARD_URL"
            )
        configure(
            model or None, None if model else url, matcher=os.environ.get("BASEREWARD_MATCHER", "normalized")
        )
    return _default(prompts, completions, **kwargs)
