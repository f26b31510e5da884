"""THE scoring path: samples -> rewards. Training-time evaluation, `basereward score`, benchmarks, the server and
the RL adapters all come through here, so a number means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from basereward.calibration import normalize, sigmoid
from basereward.collate import COLLATORS, Batch
from basereward.template import EncodedSample, Encoder
from basereward.types import Sample


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def batch_rewards(model, batch: Batch) -> list[list[float]]:
    """Run one collated batch; rewards grouped per sample, responses in order."""
    rewards = model(batch.to(model_device(model))).float().cpu().tolist()
    out: list[list[float]] = [[] for _ in range(int(batch.sample_index.max()) + 1)]
    for r, si in zip(rewards, batch.sample_index.tolist()):
        out[si].append(r)
    return out


@torch.inference_mode()
def score_encoded(
    model,
    encoded: Sequence[EncodedSample],
    pad_id: int,
    *,
    max_rows: int = 16,
    autocast_dtype: torch.dtype | None = None,
    layout: str = "shared",
) -> list[list[float]]:
    """Rewards for already-encoded samples, at most `max_rows` responses per forward (a sample is never split).

    layout "shared" (default) encodes each prompt and its images once for all its responses; "padded" repeats
    them per response. Both give the same rewards (to float rounding; see tests/test_shared_layout.py)."""
    collate = COLLATORS[layout]
    out: list[list[float]] = []
    chunk: list[EncodedSample] = []
    rows = 0
    device = model_device(model)

    def flush():
        nonlocal chunk, rows
        if chunk:
            with torch.autocast(
                device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
            ):
                out.extend(batch_rewards(model, collate(chunk, pad_id)))
        chunk, rows = [], 0

    for enc in encoded:
        if rows and rows + len(enc.responses) > max_rows:
            flush()
        chunk.append(enc)
        rows += len(enc.responses)
    flush()
    return out


class RewardScorer:
    """A loaded reward model as a callable: `scorer(samples) -> [[reward per response] per sample]`.

    `normalize(r)` maps a raw reward to the checkpoint's validation-calibrated scale ((r - mean) / std).
    """

    def __init__(
        self,
        model,
        processor,
        *,
        batch_size: int = 16,
        autocast_dtype: torch.dtype | None = None,
        progress: bool = False,
        layout: str = "shared",
    ):
        self.model = model
        self.processor = processor
        self.encoder = Encoder(processor, model.model_type, model.pool_token)
        self.batch_size = batch_size
        self.autocast_dtype = autocast_dtype
        self.progress = progress
        self.layout = layout

    def encode(self, sample: Sample) -> EncodedSample:
        return self.encoder.encode(sample)

    def __call__(self, samples: Sequence[Sample], progress: bool | None = None) -> list[list[float]]:
        from tqdm.auto import tqdm

        show = self.progress if progress is None else progress
        out: list[list[float]] = []
        step = max(1, self.batch_size // 2)
        bar = tqdm(total=len(samples), desc="scoring", unit="sample", disable=not show, leave=False)
        for start in range(0, len(samples), step):
            chunk = [self.encode(s) for s in samples[start : start + step]]
            out.extend(
                score_encoded(
                    self.model,
                    chunk,
                    self.encoder.pad_id,
                    max_rows=self.batch_size,
                    autocast_dtype=self.autocast_dtype,
                    layout=self.layout,
                )
            )
            bar.update(len(chunk))
        bar.close()
        return out

    def score_group(self, prompt: list[dict], responses: list[str], images=(), videos=()) -> list[float]:
        """Rewards of K responses to one prompt (a GRPO group): one forward, prompt and images encoded once."""
        return self([Sample(list(prompt), list(responses), list(images), list(videos))], progress=False)[0]

    def normalize(self, reward: float) -> float:
        return normalize(reward, self.model.reward_stats)

    sigmoid = staticmethod(sigmoid)


def load_scorer(
    model_dir: str | Path,
    *,
    device: str | None = None,
    batch_size: int = 16,
    dtype: str = "auto",
    progress: bool = True,
) -> RewardScorer:
    """Load a checkpoint directory as a `RewardScorer`. dtype: auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 |
    bf16."""
    from basereward.model.reward_model import load_reward_model

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, processor = load_reward_model(model_dir, device=device)
    use_bf16 = dtype == "bf16" or (dtype == "auto" and device.startswith("cuda"))
    return RewardScorer(
        model,
        processor,
        batch_size=batch_size,
        autocast_dtype=torch.bfloat16 if use_bf16 else None,
        progress=progress,
    )


Scorer = Callable[[Sequence[Sample]], list[list[float]]]


def score_pairs(
    model,
    encoder: Encoder,
    pairs,
    *,
    max_rows: int = 16,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = False,
    layout: str = "shared",
) -> tuple[list[float], list[float]]:
    """(chosen rewards, rejected rewards) for a sequence of PreferencePair, through the one scoring path."""
    from tqdm.auto import tqdm

    chosen, rejected = [], []
    step = max(1, max_rows // 2)
    for start in tqdm(range(0, len(pairs), step), desc="eval", disable=not progress, leave=False):
        enc = [encoder.encode(pairs[i].as_sample()) for i in range(start, min(start + step, len(pairs)))]
        for c, r in score_encoded(
            model, enc, encoder.pad_id, max_rows=max_rows, autocast_dtype=autocast_dtype
        ):
            chosen.append(c)
            rejected.append(r)
    return chosen, rejected


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
