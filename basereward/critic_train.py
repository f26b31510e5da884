"""The critic paradigm's pieces of `basereward train` (train.py dispatches on `paradigm`; the model is built by
`model.build`; the optimizer, schedule, step order, checkpoints, logging and the final write are the naive run's):

    CriticSteps   StepBatches whose examples are the pair's two responses, each followed by the critique request
                  and its critique from the data (`CriticFormat.example`), collated as a `CriticBatch`
    critique_share  how many training responses have a critique (train warns when none do)
    critic_sums   a micro-batch's loss (Bradley-Terry on the head's rewards + sft_weight x the critique
                  cross-entropy) and its row of the step sums; the two parts are logged as loss_bt / loss_critique

The model and its sequence are basereward/model/critic.py.
"""

from __future__ import annotations

import torch

from basereward.config import TrainConfig
from basereward.model.critic import CriticBatch, CriticFormat
from basereward.step_batches import StepBatches, naive_sums
from basereward.template import Encoder
from basereward.types import Sample


class CriticSteps(StepBatches):
    """`StepBatches` (the same pairs per step, rank and micro-batch) with critiques: ([(CriticBatch, margins) or
    None per slot], drops). A pair longer than `max_length` with its critiques is dropped as too long."""

    def __init__(self, *args, critic: CriticFormat, **kw):
        super().__init__(*args, **kw)
        self.critic = critic

    def example(self, pair, index: int):
        enc = self.encoder.encode(pair.as_sample())
        enc, lengths = self.critic.example(enc, [pair.chosen_critique, pair.rejected_critique])
        longest = len(enc.prompt.input_ids) + max(map(len, enc.responses))
        return (enc, lengths, float(pair.margin or 0.0)), longest

    def collate_examples(self, examples):
        batch = self.collate([e[0] for e in examples], self.encoder.pad_id)
        lengths = torch.tensor([n for e in examples for n in e[1]])
        return CriticBatch(batch, lengths), torch.tensor([e[2] for e in examples])


def critique_share(pairs, first: int = 1000) -> float:
    """The share of responses with a critique among the first `first` training pairs (the check `train` warns
    with: a critic trained without any learns to score an empty critique, then generates untrained ones)."""
    n = min(first, len(pairs))
    have = sum(
        (pairs[i].chosen_critique is not None) + (pairs[i].rejected_critique is not None) for i in range(n)
    )
    return have / (2 * n) if n else 0.0


def critic_step_args(encoder: Encoder, cfg: TrainConfig) -> dict:
    """What `CriticSteps` takes beyond `StepBatches`' arguments."""
    return {"critic": CriticFormat(encoder)}


def filler(encoder: Encoder, cfg: TrainConfig) -> CriticBatch:
    """A minimal pair with critiques, for a rank whose micro-batch slot is empty (run with zero weight): it
    touches the head and the LM head as a real micro-batch does."""
    from basereward.collate import COLLATORS

    enc = encoder.encode(Sample([{"role": "user", "content": "."}], [".", "."]))
    enc, lengths = CriticFormat(encoder).example(enc, [".", "."])
    return CriticBatch(COLLATORS[cfg.layout]([enc], encoder.pad_id), torch.tensor(lengths))


def critic_sums(
    out: torch.Tensor, mb: CriticBatch, margins: torch.Tensor, cfg: TrainConfig
) -> tuple[torch.Tensor, list[float], dict[str, float]]:
    """The model's (N, 2) [reward, critique cross-entropy] per response (pairs as [chosen, rejected]) -> (the
    micro-batch's loss, its row of the step sums (`losses.pair_sums`), the loss parts to log). The critique term is
    the mean over the responses that have a critique (0 when none does); `loss.length_norm` counts a response's
    tokens with its request and critique, since those are what the head read."""
    bt, row, parts = naive_sums(out[:, 0], mb, margins, cfg)
    has = mb.critique_lengths > 0
    sft = out[has, 1].mean() if bool(has.any()) else out[:, 1].sum() * 0.0
    parts["loss_critique"] = float(sft.detach())
    return bt + cfg.critic.sft_weight * sft, row, parts
