"""The last three stages of the scoring path (basereward/scoring.py) for a model whose forward maps a collated
Batch to one reward per response (a RewardModel, a CriticModel, an ensemble member):

    chunk    encodings -> forwards of at most `max_rows` responses each (`row_chunks`), a sample never split
    collate  one chunk -> Batch in the configured layout (`COLLATORS`)
    forward  Batch -> rewards per sample, under bf16 autocast when configured (`batch_rewards`)

Here, below the scorers, so that every scorer (RewardScorer, CriticScorer) runs the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from basereward.collate import COLLATORS, Batch
from basereward.template import EncodedSample


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def row_chunks(encoded: Iterable[EncodedSample], max_rows: int) -> Iterator[list[EncodedSample]]:
    """Consecutive encodings grouped into forwards of at most `max_rows` responses (rows of the padded layout).
    A sample with more responses than that runs alone: splitting it would encode its prompt twice."""
    chunk: list[EncodedSample] = []
    rows = 0
    for enc in encoded:
        if chunk and rows + len(enc.responses) > max_rows:
            yield chunk
            chunk, rows = [], 0
        chunk.append(enc)
        rows += len(enc.responses)
    if chunk:
        yield chunk


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to `dtype` on `device`'s type (bf16 on GPUs), or a no-op context when `dtype` is None."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


@torch.inference_mode()
def batch_rewards(model, batch: Batch, autocast_dtype: torch.dtype | None = None) -> list[list[float]]:
    """One collated batch through the model (under autocast when a dtype is given); rewards grouped per sample,
    responses in order."""
    device = model_device(model)
    with autocast(device, autocast_dtype):
        rewards = model(batch.to(device)).float().cpu().tolist()
    out: list[list[float]] = [[] for _ in range(int(batch.sample_index.max()) + 1)]
    for r, si in zip(rewards, batch.sample_index.tolist()):
        out[si].append(r)
    return out


def score_encoded(
    model,
    encoded: Iterable[EncodedSample],
    pad_id: int,
    *,
    max_rows: int = 16,
    layout: str = "shared",
    autocast_dtype: torch.dtype | None = None,
) -> list[list[float]]:
    """The last three stages (chunk, collate, forward) for a caller that holds encodings and a model but no
    processor (the benchmarks); `RewardScorer.score_encoded` is this with the scorer's settings."""
    collate = COLLATORS[layout]
    return [
        r
        for chunk in row_chunks(encoded, max(1, max_rows))
        for r in batch_rewards(model, collate(chunk, pad_id), autocast_dtype)
    ]
