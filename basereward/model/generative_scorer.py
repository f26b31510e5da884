"""A generative reward model behind the Scorer protocol (basereward/scoring.py): every sample's responses judged
pairwise, in both orders by default, rewards by R1-Reward's rule (`r1_rewards`), `compare` for two responses, and
counts of judge calls, order agreement and generated tokens (`GenerativeScorer.judge_stats`). The model, its judge
prompt and its checkpoint are basereward/model/generative.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from basereward.collate import COLLATORS
from basereward.distributed import counts_since
from basereward.model.generative import COUNTS, GenerativeModel, JudgeFormat
from basereward.model.rewards import autocast
from basereward.template import EncodedSample, Encoder, scorer_encoder
from basereward.types import Sample


def judge_pair(p_forward: float, p_backward: float | None = None) -> tuple[int | None, float]:
    """Responses i and j judged in order (i, j) with P("1") = `p_forward` and, when given, in order (j, i) with
    P("1") = `p_backward`: (winner 0 = i, 1 = j, None = a tie; probability that i is the better).

    Each order votes for the response it gives more than 0.5. Both orders must vote alike; when they disagree (or
    one is exactly 0.5) the pair is a tie at probability 0.5. Otherwise the probability is the mean of the two
    orders' P(i better) = p_forward and 1 - p_backward."""
    ps = [p_forward] if p_backward is None else [p_forward, 1.0 - p_backward]
    votes = {0 if p > 0.5 else 1 if p < 0.5 else None for p in ps}
    if len(votes) != 1 or None in votes:
        return None, 0.5
    return votes.pop(), sum(ps) / len(ps)


def r1_rewards(k: int, probs: dict[tuple[int, int], float]) -> tuple[list[float], int, int]:
    """R1-Reward's rule for K responses: reward(i) = the number of responses j != i that i beats, a tie (the
    orders disagree, `judge_pair`) half a win each, so rewards lie in [0, K - 1] and sum to K(K - 1)/2. `probs`
    maps an ordered pair (i, j) to P("1") of the judge call showing i as Response 1; with both orders that is
    K(K - 1) calls (one order: (i, j) for i < j only). Returns (rewards, pairs whose orders agreed, ties)."""
    wins, agreed, ties = [0.0] * k, 0, 0
    for i in range(k):
        for j in range(i + 1, k):
            winner, _ = judge_pair(probs[(i, j)], probs.get((j, i)))
            if winner is None:
                wins[i] += 0.5
                wins[j] += 0.5
                ties += 1
            else:
                wins[(i, j)[winner]] += 1.0
                agreed += 1
    return wins, agreed, ties


class GenerativeScorer:
    """A generative reward model behind the Scorer protocol (basereward/scoring.py):

    `scorer(samples) -> [[reward per response] per sample]`: each sample's K responses judged pairwise in both
    orders (K(K - 1) judge calls; `both_orders=False`: K(K - 1)/2, order (i, j) for i < j only), rewards by
    `r1_rewards` (hard wins, ties half; the scalar that eval, score, the server and the RL reward see; a lone
    response gets 0). `compare(sample) -> (preferred index, P(first better))`: the mean over both orders, 0.5 for
    a tie. `judge_stats()`: judge calls, pairs judged, the share of pairs whose two orders agreed, and ties, since the
    scorer was made (or `reset_stats`). `encode` / `score_encoded` / `encoder` / `model` are what the server's
    batcher uses; it merges the responses of one prompt that arrive in one batch into one sample.
    """

    def __init__(
        self,
        model: GenerativeModel,
        processor=None,
        *,
        encoder: Encoder | None = None,
        batch_size: int = 16,
        autocast_dtype: torch.dtype | None = None,
        progress: bool = False,
        layout: str = "shared",
        both_orders: bool = True,
        think_tokens: int | None = None,
        prompt_cache: int = 0,
    ):
        if layout not in COLLATORS:
            raise ValueError(f"layout must be one of {sorted(COLLATORS)}, not {layout!r}")
        encoder = scorer_encoder(model, processor, encoder, prompt_cache, "GenerativeScorer")
        self.model, self.encoder, self.processor = model, encoder, encoder.processor
        self.judge = JudgeFormat(encoder, model.format)
        # r1 only: reasoning tokens generated before each verdict (None: the checkpoint's setting; 0: none)
        think = getattr(model, "think_tokens", 0) if think_tokens is None else think_tokens
        self.think_tokens = think if model.format == "r1" else 0
        self.batch_size = max(1, batch_size)  # judge calls per forward
        self.autocast_dtype, self.progress = autocast_dtype, progress
        self.layout, self.both_orders = layout, both_orders
        self.reset_stats()

    def reset_stats(self) -> None:
        self.counts = dict.fromkeys(COUNTS, 0)

    def _tally(self, agreed: int, ties: int) -> None:
        self.counts["pairs_judged"] += agreed + ties
        self.counts["orders_agreed"] += agreed if self.both_orders else 0  # one order cannot disagree
        self.counts["order_ties"] += ties

    def judge_stats(self, across_ranks: bool = False, since: dict | None = None) -> dict:
        """The counts (summed over ranks when `across_ranks`: a collective) and the order agreement rate; with
        `since` (an earlier `judge_stats()` of this rank) only what was counted after it."""
        c = counts_since(self.counts, since, across_ranks)
        c["order_agreement"] = c["orders_agreed"] / c["pairs_judged"] if c["pairs_judged"] else None
        c["both_orders"] = self.both_orders
        return c

    def orders(self, k: int) -> list[tuple[int, int]]:
        return [(i, j) for i in range(k) for j in range(k) if i != j and (self.both_orders or i < j)]

    def encode(self, sample: Sample) -> EncodedSample:
        return self.judge.encode(sample)

    @torch.inference_mode()
    def judge_probs(self, encoded: Sequence[EncodedSample], max_rows: int | None = None) -> list[dict]:
        """P("1") of every judge call of each encoded sample, {(i, j): p} per sample; at most `max_rows` calls
        per forward, a sample's calls side by side after its prompt in the shared layout."""
        calls = [(s, i, j) for s, e in enumerate(encoded) for i, j in self.orders(len(e.responses))]
        out: list[dict] = [{} for _ in encoded]
        step = max_rows or self.batch_size
        device = next(self.model.parameters()).device
        for start in range(0, len(calls), step):
            chunk, items = calls[start : start + step], []
            for n, (s, i, j) in enumerate(chunk):
                e = encoded[s]
                reasoning = self.reason(e, i, j, device) if self.think_tokens else ""
                call = self.judge.call(e.prompt, e.responses[i], e.responses[j], reasoning)
                if n and chunk[n - 1][0] == s:
                    items[-1].responses.append(call)
                else:
                    items.append(EncodedSample(e.prompt, [call], e.id))
            batch = COLLATORS[self.layout](items, self.encoder.pad_id).to(device)
            with autocast(device, self.autocast_dtype):
                logits = self.model.verdict_logits(batch, self.judge.verdict_ids)
            p1 = torch.sigmoid(logits[:, 0] - logits[:, 1]).tolist()  # softmax over the two verdict tokens
            for (s, i, j), p in zip(chunk, p1):
                out[s][(i, j)] = p
        self.counts["judge_calls"] += len(calls)
        return out

    def reason(self, e: EncodedSample, i: int, j: int, device) -> str:
        """r1 with `think_tokens`: the judge's own reasoning for call (i, j), generated greedily (at most
        think_tokens tokens, cut at its `</think>`). The verdict is then read after it, the reasoning tokenised
        alone as training tokenises a pair's."""
        head = self.judge.call(e.prompt, e.responses[i], e.responses[j])[: -len(self.judge.think_close)]
        batch = COLLATORS["padded"]([EncodedSample(e.prompt, [head])], self.encoder.pad_id).to(device)
        with autocast(device, self.autocast_dtype):
            out = self.model.lm.generate(
                **batch.model_inputs(), max_new_tokens=self.think_tokens, do_sample=False, use_cache=True
            )
        new = out[0, batch.input_ids.shape[1] :].tolist()
        self.counts["generated_tokens"] += len(new)
        return self.encoder.tokenizer.decode(new, skip_special_tokens=True).split("</think>")[0]

    def score_encoded(
        self, encoded: Iterable[EncodedSample], max_rows: int | None = None
    ) -> list[list[float]]:
        encoded = list(encoded)
        rewards = []
        for e, probs in zip(encoded, self.judge_probs(encoded, max_rows)):
            r, agreed, ties = r1_rewards(len(e.responses), probs)
            self._tally(agreed, ties)
            rewards.append(r)
        return rewards

    def __call__(self, samples: Sequence[Sample], progress: bool | None = None) -> list[list[float]]:
        from tqdm.auto import tqdm

        show = self.progress if progress is None else progress
        out: list[list[float]] = []
        with tqdm(total=len(samples), desc="judging", unit="sample", disable=not show, leave=False) as bar:
            for start in range(0, len(samples), self.batch_size):  # bounds the decoded images held at once
                chunk = samples[start : start + self.batch_size]
                out.extend(self.score_encoded(self.encode(s) for s in chunk))
                bar.update(len(chunk))
        return out

    def compare(self, sample: Sample) -> tuple[int, float]:
        """(preferred index, probability that the first response is the better): the mean of both orders' P, or
        0.5 for a tie (the orders disagree), which prefers the first as `scoring.compare` does."""
        if len(sample.responses) != 2:
            raise ValueError(f"compare takes a sample with two responses, got {len(sample.responses)}")
        probs = self.judge_probs([self.encode(sample)])[0]
        winner, p = judge_pair(probs[(0, 1)], probs.get((1, 0)))
        self._tally(int(winner is not None), int(winner is None))
        return (0 if p >= 0.5 else 1), p

    def score_group(self, prompt: list[dict], responses: list[str], images=(), videos=()) -> list[float]:
        return self([Sample(list(prompt), list(responses), list(images), list(videos))], progress=False)[0]

    def normalize(self, reward: float) -> float:
        return reward  # wins have no calibrated scale
