"""The generative paradigm's pieces of `basereward train` (train.py dispatches on `paradigm`; the model is built by
`model.build`; the optimizer, schedule, step order, checkpoints, logging and the final write are the naive run's):

    JudgeSteps             StepBatches whose items are judge calls: each pair shown once, its chosen response at
                           position `chosen_position(seed, pair id)` (1 or 2), with the answer to learn
    write_order            the position of every training pair's chosen response, recorded in the output dir
    judge_sums             a micro-batch's loss and its row of the step sums (loss, correct, margin, pairs)

The order randomisation: a coin per pair from an RNG seeded by (seed, pair id), `generative.chosen_position`. It
does not depend on the data order, the epoch, the rank or a resume, so `output_dir/judge_order.jsonl` ({"id",
"chosen": 1 | 2} per training pair, written once at the start: one pass over the pairs) is what every step used,
and its counts go to basereward.json's "order" and the result line.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from basereward.config import TrainConfig
from basereward.model.generative import JudgeFormat, chosen_position, collate_judges
from basereward.step_batches import StepBatches
from basereward.template import Encoder
from basereward.types import DataError, Sample

ORDER_FILE = "judge_order.jsonl"


def pair_key(pair, index: int) -> str:
    """The id the order coin is seeded with; a pair without an id goes by its position in the training data."""
    return pair.id or f"#{index}"


def reasoning_of(pair) -> str:
    """The r1 think block's text: the pair's `meta.reasoning` (a string), or empty."""
    text = pair.meta.get("reasoning", "") or ""
    if not isinstance(text, str):
        raise DataError(
            f"{pair.where or pair.id}: meta.reasoning must be a string, got {type(text).__name__}"
        )
    return text


def write_order(out: Path, pairs, seed: int) -> dict:
    """Write `judge_order.jsonl` (one {"id", "chosen"} per training pair, in data order); return the counts."""
    counts = {1: 0, 2: 0}
    tmp = Path(out) / (ORDER_FILE + ".tmp")
    with tmp.open("w") as f:
        for i in range(len(pairs)):
            key = pair_key(pairs[i], i)
            at = chosen_position(seed, key)
            counts[at] += 1
            f.write(json.dumps({"id": key, "chosen": at}) + "\n")
    tmp.replace(Path(out) / ORDER_FILE)
    return {"seed": seed, "file": ORDER_FILE, "chosen_first": counts[1], "chosen_second": counts[2]}


class JudgeSteps(StepBatches):
    """`StepBatches` (the same pairs per step, rank and micro-batch) with judge calls as the micro-batches:
    ([(JudgeBatch, zero margins) or None per slot], drops)."""

    def __init__(self, *args, judge: JudgeFormat, order_seed: int, **kw):
        super().__init__(*args, **kw)
        self.judge, self.order_seed = judge, order_seed

    def example(self, pair, index: int):
        at = chosen_position(self.order_seed, pair_key(pair, index))
        enc, n_answer, verdict_at = self.judge.example(
            self.judge.encode(pair.as_sample()), at, reasoning_of(pair)
        )
        return (enc, n_answer, verdict_at, at - 1), len(enc.prompt.input_ids) + len(enc.responses[0])

    def collate_examples(self, examples):
        return collate_judges(examples, self.judge, self.collate), torch.zeros(len(examples))


def judge_step_args(encoder: Encoder, cfg: TrainConfig) -> dict:
    """What `JudgeSteps` takes beyond `StepBatches`' arguments."""
    return {"judge": JudgeFormat(encoder, cfg.generative.format), "order_seed": cfg.seed}


def filler(encoder: Encoder, cfg: TrainConfig):
    """A minimal judge call for a rank whose micro-batch slot is empty (run with zero weight)."""
    from basereward.collate import COLLATORS

    judge = JudgeFormat(encoder, cfg.generative.format)
    example, n, at = judge.example(judge.encode(Sample([{"role": "user", "content": "."}], [".", "."])), 1)
    return collate_judges([(example, n, at, 0)], judge, COLLATORS[cfg.layout])


def judge_sums(out: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """The model's (N, 2) [answer cross-entropy, verdict margin] per pair -> (the micro-batch's mean loss, its
    row of the step sums: loss x n, pairs whose verdict logit is the higher, margin x n, n)."""
    loss = out[:, 0].mean()
    d = out.detach().float().cpu()
    return loss, [float(d[:, 0].sum()), float((d[:, 1] > 0).sum()), float(d[:, 1].sum()), len(d)]
