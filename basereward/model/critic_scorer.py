"""A critic-based reward model behind the Scorer protocol (basereward/scoring.py): each response's critique is
generated (greedy, bounded, batched), then the response and its critique are scored through the one scoring path
(`model.rewards.score_encoded`, in the scorer's layout, as RewardScorer does). The model, its prompt and its checkpoint are
basereward/model/critic.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from basereward.calibration import normalize
from basereward.collate import COLLATORS, left_padded
from basereward.distributed import counts_since
from basereward.model.critic import CriticFormat, CriticModel
from basereward.model.rewards import autocast, model_device, row_chunks, score_encoded
from basereward.template import EncodedSample, Encoder, scorer_encoder
from basereward.types import Sample

COUNTS = ("critiques", "generated_tokens", "stopped", "generate_calls")  # CriticScorer.critic_stats


class CriticScorer:
    """`scorer(samples) -> [[reward per response] per sample]`: for every response, the critique is generated
    greedily (at most `max_critique_tokens`, the checkpoint's setting unless given; it stops at `<|im_end|>`),
    `batch_size` responses per `generate` call, left-padded, each row holding its prompt and images; then every
    response with its critique is scored as the naive model's responses are (`layout`: "shared" packs a sample's
    responses after one copy of its prompt). `critiques(samples)` returns the texts; `critic_stats()` counts the
    critiques and the tokens generated, the cost a naive RM does not pay. `compare` comes from the rewards
    (`scoring.compare`: the head is Bradley-Terry trained). `encode` / `score_encoded` / `encoder` / `model` are
    what the server's batcher uses.
    """

    def __init__(
        self,
        model: CriticModel,
        processor=None,
        *,
        encoder: Encoder | None = None,
        batch_size: int = 16,
        autocast_dtype: torch.dtype | None = None,
        progress: bool = False,
        layout: str = "shared",
        max_critique_tokens: int | None = None,
        prompt_cache: int = 0,
    ):
        if layout not in COLLATORS:
            raise ValueError(f"layout must be one of {sorted(COLLATORS)}, not {layout!r}")
        encoder = scorer_encoder(model, processor, encoder, prompt_cache, "CriticScorer")
        self.model, self.encoder, self.processor = model, encoder, encoder.processor
        self.format = CriticFormat(encoder, model.request)
        self.max_critique_tokens = max_critique_tokens or model.max_critique_tokens
        self.batch_size = max(1, batch_size)
        self.autocast_dtype, self.progress, self.layout = autocast_dtype, progress, layout
        self.reset_stats()

    def reset_stats(self) -> None:
        self.counts = dict.fromkeys(COUNTS, 0)

    def critic_stats(self, across_ranks: bool = False, since: dict | None = None) -> dict:
        """The counts (summed over ranks when `across_ranks`: a collective), with `since` (an earlier
        `critic_stats()` of this rank) only what was counted after it, and the mean tokens per critique."""
        c = counts_since(self.counts, since, across_ranks)
        c["tokens_per_critique"] = c["generated_tokens"] / c["critiques"] if c["critiques"] else None
        c["max_critique_tokens"] = self.max_critique_tokens
        return c

    def encode(self, sample: Sample) -> EncodedSample:
        return self.encoder.encode(sample)

    @torch.inference_mode()
    def generate(
        self, encoded: Sequence[EncodedSample], max_rows: int | None = None
    ) -> list[list[list[int]]]:
        """The critique of every response: its generated token ids per response per sample, the closing
        `<|im_end|>` included when generation stopped there (else cut at `max_critique_tokens`)."""
        rows = [(s, i) for s, e in enumerate(encoded) for i in range(len(e.responses))]
        out: list[list[list[int]]] = [[[] for _ in e.responses] for e in encoded]
        end, pad = self.encoder.end_id, self.encoder.pad_id
        device = model_device(self.model)
        step = max_rows or self.batch_size
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            items = [
                EncodedSample(encoded[s].prompt, [self.format.ask(encoded[s].responses[i])]) for s, i in chunk
            ]
            batch = left_padded(COLLATORS["padded"](items, pad)).to(device)
            with autocast(device, self.autocast_dtype):
                gen = self.model.lm.generate(
                    **batch.model_inputs(),
                    max_new_tokens=self.max_critique_tokens,
                    do_sample=False,
                    eos_token_id=end,
                    pad_token_id=pad,
                    use_cache=True,
                )
            for (s, i), new in zip(chunk, gen[:, batch.input_ids.shape[1] :].tolist()):
                ids = new[: new.index(end) + 1] if end in new else new
                out[s][i] = ids
                self.counts["generated_tokens"] += len(ids)
                self.counts["stopped"] += int(end in ids)
            self.counts["critiques"] += len(chunk)
            self.counts["generate_calls"] += 1
        return out

    def score_encoded(
        self, encoded: Iterable[EncodedSample], max_rows: int | None = None
    ) -> list[list[float]]:
        """Critiques generated, then rewards of the responses followed by them (the server enters here)."""
        return self._score(list(encoded), max_rows)[0]

    def _score(self, encoded: list[EncodedSample], max_rows: int | None = None):
        critiques = self.generate(encoded, max_rows)
        scored = [
            EncodedSample(e.prompt, [self.format.scored(r, c) for r, c in zip(e.responses, cs)], e.id)
            for e, cs in zip(encoded, critiques)
        ]
        rewards = score_encoded(
            self.model,
            scored,
            self.encoder.pad_id,
            max_rows=max_rows or self.batch_size,
            layout=self.layout,
            autocast_dtype=self.autocast_dtype,
        )
        return rewards, critiques

    def score_with_critiques(
        self, samples: Sequence[Sample], progress: bool | None = None
    ) -> tuple[list[list[float]], list[list[str]]]:
        """(rewards, critique texts), each per response per sample."""
        from tqdm.auto import tqdm

        show = self.progress if progress is None else progress
        rewards: list[list[float]] = []
        texts: list[list[str]] = []
        tok = self.encoder.tokenizer
        with tqdm(total=len(samples), desc="critiquing", unit="sample", disable=not show, leave=False) as bar:
            # chunked as the samples are encoded, so no more than one forward's images are held decoded
            for chunk in row_chunks((self.encode(s) for s in samples), self.batch_size):
                r, c = self._score(chunk)
                rewards.extend(r)
                texts.extend([tok.decode(ids, skip_special_tokens=True) for ids in cs] for cs in c)
                bar.update(len(chunk))
        return rewards, texts

    def __call__(self, samples: Sequence[Sample], progress: bool | None = None) -> list[list[float]]:
        return self.score_with_critiques(samples, progress)[0]

    def critiques(self, samples: Sequence[Sample]) -> list[list[str]]:
        """The generated critique texts, per response per sample."""
        return self.score_with_critiques(samples, progress=False)[1]

    def score_group(self, prompt: list[dict], responses: list[str], images=(), videos=()) -> list[float]:
        return self([Sample(list(prompt), list(responses), list(images), list(videos))], progress=False)[0]

    def normalize(self, reward: float) -> float:
        return normalize(reward, self.model.reward_stats)
