"""THE scoring path: samples -> rewards. Training-time validation, `basereward score`, `basereward eval`, the demo,
the server and the RL adapters all come through `RewardScorer`, so a number means the same thing everywhere.

A call runs four stages; a caller holding encodings already (the server's batcher) enters at the second:

    encode   Sample -> EncodedSample (`Encoder.encode`, basereward/template.py; optionally with its prompt cache)
    chunk    encodings -> forwards of at most `batch_size` responses each (`row_chunks`), a sample never split
    collate  one chunk -> Batch in the configured layout (`COLLATORS`; "shared": prompt and images once per
             sample; "padded": repeated per response; the same rewards to float rounding, test_shared_layout.py)
    forward  Batch -> rewards per sample, under bf16 autocast when configured (`batch_rewards`)

The last three stages live in basereward/model/rewards.py (re-exported here), so that the critic's scorer runs
them too. Pairs go through the same path, merged by prompt into samples of their distinct responses (`score_pairs`).

Every reward-model paradigm answers two questions, and callers ask only these:

    score    K responses to one prompt -> K rewards (`Scorer`: samples -> [[reward per response] per sample])
    compare  two responses -> (preferred index, probability that the first is the better)

A scalar scorer (a RewardScorer, an ensemble, eval's length baseline, the server's HTTP client) gets `compare` for
free from its rewards (`compare`: Bradley-Terry, sigmoid(r0 - r1)); a scorer with a `compare` method of its own
(the generative judge, `GenerativeScorer` in basereward/model/generative_scorer.py) answers it itself. `load_scorer`
gives a RewardScorer for a checkpoint directory, a CriticScorer (basereward/model/critic_scorer.py: critique
generated, then scored through `score_encoded`) or a GenerativeScorer for one whose basereward.json says
`"paradigm": "critic"` or `"generative"`, and an `EnsembleScorer` (basereward/ensemble.py) for an ensemble
directory, so every verb taking `--model` takes all four.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from basereward.calibration import normalize, sigmoid
from basereward.collate import COLLATORS
from basereward.ensemble import EnsembleScorer, is_ensemble_dir, load_ensemble
from basereward.model.rewards import batch_rewards, model_device, row_chunks, score_encoded  # noqa: F401 (the path)
from basereward.template import EncodedSample, Encoder, scorer_encoder
from basereward.types import Sample

if TYPE_CHECKING:
    from basereward.model.critic_scorer import CriticScorer
    from basereward.model.generative_scorer import GenerativeScorer

# Anything that maps samples to [[reward per response] per sample]: a RewardScorer, an EnsembleScorer, the
# server's HTTP client, or eval's length baseline.
Scorer = Callable[[Sequence[Sample]], list[list[float]]]


class RewardScorer:
    """A reward model as a callable: `scorer(samples) -> [[reward per response] per sample]`.

    `model` is a RewardModel, or the module training runs (a DDP's inner module or an FSDP-sharded root): pass
    that run's `encoder` then, since the encoder is built from the checkpoint's processor otherwise.
    `batch_size` is the row budget of one forward (responses, not samples). `layout` is "shared" or "padded".
    `prompt_cache=N` turns on the encoder's prompt cache (`Encoder`). `normalize(r)` maps a raw reward to the
    checkpoint's validation-calibrated scale ((r - mean) / std).
    """

    def __init__(
        self,
        model,
        processor=None,
        *,
        encoder: Encoder | None = None,
        batch_size: int = 16,
        autocast_dtype: torch.dtype | None = None,
        progress: bool = False,
        layout: str = "shared",
        prompt_cache: int = 0,
    ):
        if layout not in COLLATORS:
            raise ValueError(f"layout must be one of {sorted(COLLATORS)}, not {layout!r}")
        encoder = scorer_encoder(model, processor, encoder, prompt_cache, "RewardScorer")
        self.model = model
        self.encoder = encoder
        self.processor = encoder.processor
        self.batch_size = max(1, batch_size)
        self.autocast_dtype = autocast_dtype
        self.progress = progress
        self.layout = layout

    def encode(self, sample: Sample) -> EncodedSample:
        return self.encoder.encode(sample)

    def score_encoded(
        self, encoded: Iterable[EncodedSample], max_rows: int | None = None
    ) -> list[list[float]]:
        """Rewards of already-encoded samples (the server's batches arrive encoded), at most `max_rows` (default:
        batch_size) responses per forward."""
        return score_encoded(
            self.model,
            encoded,
            self.encoder.pad_id,
            max_rows=max_rows or self.batch_size,
            layout=self.layout,
            autocast_dtype=self.autocast_dtype,
        )

    def __call__(self, samples: Sequence[Sample], progress: bool | None = None) -> list[list[float]]:
        from tqdm.auto import tqdm

        show = self.progress if progress is None else progress
        out: list[list[float]] = []
        with tqdm(total=len(samples), desc="scoring", unit="sample", disable=not show, leave=False) as bar:
            # chunked as the samples are encoded, so no more than one forward's images are held decoded
            for chunk in row_chunks((self.encode(s) for s in samples), self.batch_size):
                out.extend(self.score_encoded(chunk))
                bar.update(len(chunk))
        return out

    def score_group(self, prompt: list[dict], responses: list[str], images=(), videos=()) -> list[float]:
        """Rewards of K responses to one prompt (a GRPO group): prompt and images encoded once."""
        return self([Sample(list(prompt), list(responses), list(images), list(videos))], progress=False)[0]

    def normalize(self, reward: float) -> float:
        return normalize(reward, self.model.reward_stats)

    sigmoid = staticmethod(sigmoid)


def merge_pairs(pairs: Sequence) -> tuple[list[Sample], list[tuple[int, int, int]]]:
    """The PreferencePairs as samples to score, each distinct response of a prompt once: pairs with equal
    `prompt_key()` (same prompt and images) become one sample, and `where[k]` = (sample, chosen's response index,
    rejected's response index) of pair k. A response's reward does not depend on the others scored with it, so
    this changes no number, only the work: RM-Bench's 9 pairs per prompt hold 6 responses, MM-RLHF-RewardBench's
    pairs of a query 3-5, and their prompt is encoded once. Pairs with videos are never merged."""
    samples: list[Sample] = []
    slots: dict[str, tuple[int, dict[str, int]]] = {}
    where: list[tuple[int, int, int]] = []
    for p in pairs:
        key = p.as_sample().prompt_key()
        if key is None or key not in slots:
            samples.append(Sample(p.prompt, [], p.images, p.videos, p.id))
            index: dict[str, int] = {}
            if key is not None:
                slots[key] = (len(samples) - 1, index)
            at = len(samples) - 1
        else:
            at, index = slots[key]
        for text in (p.chosen, p.rejected):
            if text not in index:
                index[text] = len(samples[at].responses)
                samples[at].responses.append(text)
        where.append((at, index[p.chosen], index[p.rejected]))
    return samples, where


def pair_rewards(
    rewards: Sequence[Sequence[float]], where: Sequence[tuple[int, int, int]]
) -> list[tuple[float, float]]:
    """(chosen reward, rejected reward) per pair from the merged samples' rewards (`merge_pairs`)."""
    return [(float(rewards[s][c]), float(rewards[s][r])) for s, c, r in where]


def score_pairs(scorer: Scorer, pairs: Sequence) -> list[tuple[float, float]]:
    """(chosen reward, rejected reward) of each PreferencePair, through the one scoring path: the pairs merged by
    prompt (`merge_pairs`; a pair alone is one sample with two responses), so with a RewardScorer each prompt and
    its images are encoded once and the scorer's layout and batch size apply."""
    samples, where = merge_pairs(pairs)
    rewards = scorer(samples)
    if len(rewards) != len(samples) or any(len(r) != len(s.responses) for r, s in zip(rewards, samples)):
        raise RuntimeError(f"scorer returned {len(rewards)} reward lists for {len(samples)} samples")
    return pair_rewards(rewards, where)


def load_scorer(
    model_dir: str | Path,
    *,
    device: str | None = None,
    batch_size: int = 16,
    dtype: str = "auto",
    progress: bool = True,
    layout: str = "shared",
) -> RewardScorer | EnsembleScorer | CriticScorer | GenerativeScorer:
    """Load a checkpoint directory as a `RewardScorer` (a `CriticScorer` / `GenerativeScorer` when its
    basereward.json's "paradigm" is "critic" / "generative"; naive when absent), or an ensemble directory
    (`basereward ensemble`) as an `EnsembleScorer` whose members are loaded here with the same settings.
    dtype: auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16."""
    settings = dict(device=device, batch_size=batch_size, dtype=dtype, progress=progress, layout=layout)
    if is_ensemble_dir(model_dir):
        return load_ensemble(model_dir, lambda member: load_scorer(member, **settings))
    from basereward.model.critic import load_critic
    from basereward.model.critic_scorer import CriticScorer
    from basereward.model.generative import load_generative, paradigm_of
    from basereward.model.generative_scorer import GenerativeScorer
    from basereward.model.reward_model import load_reward_model

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    use_bf16 = dtype == "bf16" or (dtype == "auto" and device.startswith("cuda"))
    load, scorer = {
        "naive": (load_reward_model, RewardScorer),
        "critic": (load_critic, CriticScorer),
        "generative": (load_generative, GenerativeScorer),
    }[paradigm_of(model_dir)]
    model, processor = load(model_dir, device=device)
    return scorer(
        model,
        processor,
        batch_size=batch_size,
        autocast_dtype=torch.bfloat16 if use_bf16 else None,
        progress=progress,
        layout=layout,
    )


def compare(scorer: Scorer, sample: Sample) -> tuple[int, float]:
    """Which of a sample's two responses is preferred, and the probability that the first is the better one:
    the scorer's own `compare` when it has one (a pairwise judge), else sigmoid(r0 - r1) of a scalar scorer's
    rewards (the Bradley-Terry model the heads are trained with). A tie prefers the first, at probability 0.5."""
    own = getattr(scorer, "compare", None)
    if callable(own):
        return own(sample)
    if len(sample.responses) != 2:
        raise ValueError(f"compare takes a sample with two responses, got {len(sample.responses)}")
    r0, r1 = scorer([sample])[0]
    return (0 if r0 >= r1 else 1), sigmoid(r0 - r1)


def pair_stats(chosen: Sequence[float], rejected: Sequence[float]) -> dict:
    """Accuracy (strict: a tie counts wrong), ties, mean margin, reward mean/std over all responses."""
    c = torch.tensor(chosen, dtype=torch.float64)
    r = torch.tensor(rejected, dtype=torch.float64)
    allr = torch.cat([c, r])
    n = len(chosen)
    return {
        "n": n,
        "accuracy": float((c > r).double().mean()) if n else float("nan"),
        "ties": int((c == r).sum()),
        "margin": float((c - r).mean()) if n else float("nan"),
        "reward_mean": float(allr.mean()) if n else float("nan"),
        "reward_std": float(allr.std(unbiased=False)) if n else float("nan"),
    }
