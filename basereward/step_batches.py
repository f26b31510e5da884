"""Which pairs each optimizer step, rank and micro-batch trains on: a pure function of (seed, step), so that a
resumed run, on any number of ranks, continues the same global sequence of batches.

    StepBatches(pairs, encoder, batch_size=8, micro_batch_size=2, seed=0, ..., rank=r, world_size=2)[step]
        -> ([(Batch, margins) or None per micro-batch slot], {"too_long": n, "bad_record": n, "tie": n})

Also the naive paradigm's loss of a micro-batch (`naive_sums`) and its zero-weight filler; the other paradigms
subclass StepBatches (basereward/critic_train.py, basereward/generative_train.py).
"""

from __future__ import annotations

import torch

from basereward.collate import COLLATORS, Batch
from basereward.config import TrainConfig
from basereward.losses import pair_loss, pair_sums
from basereward.template import Encoder
from basereward.types import DataError, Sample


class StepBatches(torch.utils.data.Dataset):
    """Item `step` = this rank's micro-batches of that optimizer step, encoded and collated.

    Epoch e visits the pairs in the order of `randperm(n, generator=seed + e)`; step s takes stream positions
    [s * batch_size, (s + 1) * batch_size) and rank r of W the r-th contiguous block of them, cut into micro-batches.
    Every rank returns the same number of micro-batch slots; a slot whose pairs were all dropped is None (the
    trainer then runs a zero-weight forward so that collectives stay in step)."""

    def __init__(
        self,
        pairs,
        encoder: Encoder,
        batch_size: int,
        micro_batch_size: int,
        seed: int,
        max_length: int | None,
        num_steps: int,
        layout: str = "shared",
        *,
        rank: int = 0,
        world_size: int = 1,
        on_error: str = "fail",
        drop_ties: bool = False,
    ):
        self.pairs, self.encoder, self.collate = pairs, encoder, COLLATORS[layout]
        self.batch_size, self.micro = batch_size, micro_batch_size
        self.seed, self.max_length, self.num_steps = seed, max_length, num_steps
        self.rank, self.world_size, self.on_error, self.drop_ties = rank, world_size, on_error, drop_ties
        self._perm: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return self.num_steps

    def global_indices(self, step: int) -> list[int]:
        n, out = len(self.pairs), []
        for pos in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch = pos // n
            if self._perm is None or self._perm[0] != epoch:
                self._perm = (
                    epoch,
                    torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch)),
                )
            out.append(int(self._perm[1][pos % n]))
        return out

    def indices(self, step: int) -> list[int]:
        """This rank's pairs of `step`, in order."""
        share = self.batch_size // self.world_size
        return self.global_indices(step)[self.rank * share : (self.rank + 1) * share]

    def __getitem__(self, step: int) -> tuple[list[tuple[object, torch.Tensor] | None], dict[str, int]]:
        """([(micro-batch, pair margins) or None per slot], {reason: pairs dropped})."""
        idx = self.indices(step)
        slots, dropped = [], {"too_long": 0, "bad_record": 0, "tie": 0}
        for start in range(0, len(idx), self.micro):
            examples = []
            for i in idx[start : start + self.micro]:
                try:
                    pair = self.pairs[i]
                    if self.drop_ties and pair.meta.get("tie"):
                        dropped["tie"] += 1
                        continue
                    example, length = self.example(pair, i)
                except DataError:
                    if self.on_error == "fail":
                        raise
                    dropped["bad_record"] += 1
                    continue
                if self.max_length and length > self.max_length:
                    dropped["too_long"] += 1
                    continue
                examples.append(example)
            slots.append(self.collate_examples(examples) if examples else None)
        return slots, dropped

    # What a paradigm changes (basereward/generative_train.py, basereward/critic_train.py): how a pair becomes a
    # training example, and how examples become a micro-batch.

    def example(self, pair, index: int) -> tuple[object, int]:
        """(the pair's training example, its longest row in tokens); a DataError for a bad record."""
        enc = self.encoder.encode(pair.as_sample())
        return (enc, float(pair.margin or 0.0)), len(enc.prompt.input_ids) + max(map(len, enc.responses))

    def collate_examples(self, examples: list) -> tuple[object, torch.Tensor]:
        """(micro-batch, pair margins)."""
        batch = self.collate([enc for enc, _ in examples], self.encoder.pad_id)
        return batch, torch.tensor([m for _, m in examples])


def naive_sums(rewards: torch.Tensor, mb: Batch, margins: torch.Tensor, cfg: TrainConfig):
    """The naive loss of a micro-batch's rewards (pairs as [chosen, rejected]): (loss, its row of the step sums,
    the loss parts to log)."""
    r_c, r_r = rewards[0::2], rewards[1::2]
    lengths = mb.response_lengths if cfg.loss.length_norm else None
    loss, parts = pair_loss(
        r_c,
        r_r,
        margin=margins.to(rewards.device) if cfg.loss.use_margin else None,
        center_coef=cfg.loss.center_coef,
        len_chosen=lengths[0::2] if lengths is not None else None,
        len_rejected=lengths[1::2] if lengths is not None else None,
    )
    return loss, pair_sums(r_c, r_r), parts


def naive_filler(encoder: Encoder, cfg: TrainConfig) -> Batch:
    """A minimal pair, for a rank whose micro-batch slot is empty (run with zero weight)."""
    tiny = encoder.encode(Sample([{"role": "user", "content": "."}], [".", "."]))
    return COLLATORS[cfg.layout]([tiny], encoder.pad_id)
