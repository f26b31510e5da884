"""The generative reward model (`paradigm: generative`): the backbone WITH its LM head judges which of two
responses is better, and its checkpoint directory; its scorer is basereward/model/generative_scorer.py.
docs/recipe.md §4 says how to train and evaluate one.

The judge prompt, one user turn rendered by the checkpoint's chat template (through `template.Encoder`, so images
and their tokens are handled as everywhere else), then the answer:

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n{INSTRUCTION}\\n\\n[Query]\\n{query}
    \\n\\n[Response 1]\\n{a}\\n\\n[Response 2]\\n{b}\\n\\n{QUESTIONS[format]}<|im_end|>\\n<|im_start|>assistant\\n{answer}

    seed   answer = the verdict token "1" or "2" (Seed-1.5-VL)
    r1     answer = <think>{reasoning}</think><answer>{1|2}</answer><|im_end|> (R1-Reward); the reasoning is a pair's
           `meta.reasoning` when it has one, else empty. It is used verbatim in either order, so it should name the
           responses by content, not by number.

The part up to the query is one `PromptEncoding` per sample (`JudgeFormat.encode`: rendered with a marker token at
the end of the user text and cut there), so a sample's K responses share its prompt and images; each judge call
appends its tokens: the two responses (tokenised alone, as for the naive model) between fixed labels, the question
and the turn's end. `basereward.collate` then packs them (layout "shared": the prompt and images once per sample).

Training: cross-entropy of the answer tokens only (the verdict for seed; the whole think+answer continuation for r1),
the mean over each pair's answer tokens, then over pairs. Inference reads P("1") = softmax over the logits of the
two verdict tokens at the position where the verdict comes. r1 forces `<think></think><answer>` there, an empty
think block, so nothing is generated, unless the checkpoint's `generative.think_tokens` is N > 0: then the judge
first writes up to N reasoning tokens greedily (counted in `GenerativeScorer.judge_stats`).

Checkpoint: config.json + model.safetensors (the full model, HF layout, loadable by transformers alone), the
processor files and basereward.json {"paradigm": "generative", "generative": {"format", "order_seed",
"think_tokens", "verdicts"}, "order": the training run's counts, "versions"}.
"""

from __future__ import annotations

import json
import platform
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from basereward.collate import Batch
from basereward.config import GENERATIVE_FORMATS, PARADIGMS
from basereward.model.backbone import (
    check_loading_info,
    model_type_of,
    quiet_transformers,
    refuse_pickled_weights,
)
from basereward.model.reward_model import FORMAT_VERSION, META_FILE, RewardModel, _own_version
from basereward.template import EncodedSample, Encoder, PromptEncoding
from basereward.types import DataError, Sample

LM_CLASSES = {
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
}
INSTRUCTION = (
    "You are a judge. Below are a query and two responses to it. Decide which response is better: more correct, "
    "more helpful, and faithful to the image(s) if there are any."
)
QUESTIONS = {
    "seed": 'Which response is better? Answer with "1" or "2" only.',
    "r1": "Which response is better? Think inside <think></think>, then answer 1 or 2 inside <answer></answer>.",
}
VERDICTS = ("1", "2")
COUNTS = (
    "judge_calls",
    "pairs_judged",
    "orders_agreed",
    "order_ties",
    "generated_tokens",
)  # GenerativeScorer.judge_stats
MARKER = "<|endoftext|>"  # a special token: the tokenizer never merges it with the text around it


def query_text(messages: list[dict]) -> str:
    """The query as the judge reads it: a lone message's content, or "role: content" lines for a conversation
    (`<image>` tags stay where they are)."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


@dataclass
class JudgePrompt(PromptEncoding):
    """A sample's judge prompt up to the end of the query (images included); `tail` closes the user turn and opens
    the assistant's (`<|im_end|>\\n<|im_start|>assistant\\n`)."""

    tail: list[int] = field(default_factory=list)


class JudgeFormat:
    """Token ids of judge prompts and answers for one checkpoint's processor (through its `Encoder`)."""

    def __init__(self, encoder: Encoder, fmt: str = "seed"):
        if fmt not in GENERATIVE_FORMATS:
            raise ValueError(f"format must be one of {GENERATIVE_FORMATS}, got {fmt!r}")
        self.encoder, self.format = encoder, fmt
        self.marker_id = self._single(MARKER)
        self.verdict_ids = [self._single(v) for v in VERDICTS]
        self.label_1, self.label_2 = self.ids("\n\n[Response 1]\n"), self.ids("\n\n[Response 2]\n")
        self.question = self.ids("\n\n" + QUESTIONS[fmt])
        self.think_open, self.think_close = self.ids("<think>"), self.ids("</think><answer>")
        self.answer_close = self.ids("</answer>")

    def ids(self, text: str) -> list[int]:
        return self.encoder.response(text)[:-1]  # the tokenizer's ids, without the turn-closing token

    def _single(self, text: str) -> int:
        ids = self.ids(text)
        if len(ids) != 1:
            raise ValueError(f"the judge needs {text!r} to be one token; this tokenizer makes it {ids}")
        return ids[0]

    def encode(self, sample: Sample) -> EncodedSample:
        """The judge prompt up to the query (a `JudgePrompt`) and each response's ids (without `<|im_end|>`)."""
        content = f"{INSTRUCTION}\n\n[Query]\n{query_text(sample.prompt)}{MARKER}"
        user = [{"role": "user", "content": content}]
        enc = self.encoder.encode(Sample(user, sample.responses, sample.images, sample.videos, sample.id))
        p = enc.prompt
        cut = len(p.input_ids) - 1 - p.input_ids[::-1].index(self.marker_id)
        parts = {f.name: getattr(p, f.name) for f in fields(PromptEncoding)}  # vision tensors as they are
        parts["input_ids"] = p.input_ids[:cut]
        if p.mm_token_type_ids is not None:
            parts["mm_token_type_ids"] = p.mm_token_type_ids[:cut]
        prefix = JudgePrompt(**parts, tail=p.input_ids[cut + 1 :])
        return EncodedSample(prefix, [r[:-1] for r in enc.responses], sample.id)

    def call(self, prompt: JudgePrompt, a: list[int], b: list[int], reasoning: str = "") -> list[int]:
        """The tokens after the prompt of the judge call "is `a` (Response 1) or `b` (Response 2) better?", up to
        where the verdict comes (r1: through the think block, empty unless a reasoning is given, and `<answer>`)."""
        return self.label_1 + a + self.label_2 + b + self.question + prompt.tail + self.think(reasoning)

    def think(self, reasoning: str = "") -> list[int]:
        """r1: `<think>{reasoning}</think><answer>` (the reasoning tokenised alone, as a response is); seed: none."""
        if self.format == "seed":
            return []
        return self.think_open + (self.ids(reasoning) if reasoning else []) + self.think_close

    def example(
        self, enc: EncodedSample, chosen_at: int, reasoning: str = ""
    ) -> tuple[EncodedSample, int, int]:
        """A training judge call for a pair encoded [chosen, rejected], the chosen shown as Response `chosen_at`
        (1 or 2): (one-response EncodedSample whose response ends with the answer, answer length, verdict index).
        The answer is the verdict (seed) or the think block, the verdict, `</answer>` and `<|im_end|>` (r1)."""
        c, r = enc.responses
        a, b = (c, r) if chosen_at == 1 else (r, c)
        think = self.think(reasoning)
        after = self.answer_close + [self.encoder.end_id] if self.format == "r1" else []
        answer = think + [self.verdict_ids[chosen_at - 1]] + after
        head = self.call(enc.prompt, a, b, reasoning)[: -len(think) or None]
        return EncodedSample(enc.prompt, [head + answer], enc.id), len(answer), len(think)


def chosen_position(seed: int, pair_id: str) -> int:
    """Where a training pair shows its chosen response (1 or 2): a coin of an RNG seeded by (seed, pair id), so
    the same on every rank, epoch and resume, and independent of the data order."""
    return 1 if random.Random(f"{seed}\x1f{pair_id}").random() < 0.5 else 2


@dataclass
class JudgeBatch:
    """Collated training judge calls: the last `answer_lengths[i]` tokens of call i (ending at its `score_cols`)
    are supervised; the verdict is answer token `verdict_at[i]`, and `target[i]` = 0 if it is "1", 1 if "2"."""

    batch: Batch
    answer_lengths: torch.Tensor
    verdict_at: torch.Tensor
    target: torch.Tensor
    choices: torch.Tensor  # (2,) the token ids of "1" and "2"

    def to(self, device) -> JudgeBatch:
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self)}
        return JudgeBatch(**moved)


def collate_judges(examples: Sequence[tuple[EncodedSample, int, int, int]], judge: JudgeFormat, collate):
    """(example, answer length, verdict index, target) per training judge call -> JudgeBatch; `collate` is one of
    `collate.COLLATORS`."""
    return JudgeBatch(
        collate([e[0] for e in examples], judge.encoder.pad_id),
        torch.tensor([e[1] for e in examples]),
        torch.tensor([e[2] for e in examples]),
        torch.tensor([e[3] for e in examples]),
        torch.tensor(judge.verdict_ids),
    )


def answer_positions(jb: JudgeBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, column, call) of every supervised answer token."""
    return tail_positions(jb.batch, jb.answer_lengths)


def tail_positions(b: Batch, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, column, item) of the last `n[i]` tokens of each scored segment i of a collated batch (the segment
    ends at its `score_cols[i]`); n[i] = 0 leaves item i out."""
    item = torch.repeat_interleave(torch.arange(len(n), device=n.device), n)
    offset = torch.arange(int(n.sum()), device=n.device) - torch.repeat_interleave(n.cumsum(0) - n, n)
    cols = b.score_cols[item] - n[item] + 1 + offset
    return b.score_rows[item], cols, item


def tail_cross_entropy(lm_head: nn.Module, h: torch.Tensor, b: Batch, n: torch.Tensor) -> torch.Tensor:
    """(N,) fp32: the mean next-token cross-entropy of the last `n[i]` tokens of each scored segment, read from
    the hidden states `h` of batch `b` through the LM head (run only at those positions); 0 where n[i] = 0."""
    rows, cols, item = tail_positions(b, n)
    logits = lm_head(h[rows, cols - 1].to(lm_head.weight.dtype)).float()  # position t predicts token t + 1
    tok = F.cross_entropy(logits, b.input_ids[rows, cols], reduction="none")
    total = torch.zeros(len(n), dtype=tok.dtype, device=tok.device).index_add(0, item, tok)
    return total / n.clamp(min=1).to(tok.dtype)


def answer_labels(jb: JudgeBatch) -> torch.Tensor:
    """(R, L) labels in the Hugging Face convention: the token id at answer tokens, -100 everywhere else."""
    rows, cols, _ = answer_positions(jb)
    labels = torch.full_like(jb.batch.input_ids, -100)
    labels[rows, cols] = jb.batch.input_ids[rows, cols]
    return labels


class GenerativeModel(nn.Module):
    """A Qwen2.5-VL / Qwen2-VL ForConditionalGeneration (or a text causal LM) as a pairwise judge."""

    # the backbone runs as the naive model's does, in either layout (needs `backbone` and `model_type`)
    hidden = RewardModel.hidden
    shared_position_ids = RewardModel.shared_position_ids
    dtype_of_compute = RewardModel.dtype_of_compute

    def __init__(self, lm: nn.Module, model_type: str, fmt: str = "seed", order_seed: int = 0):
        super().__init__()
        self.lm = lm
        self.model_type = model_type
        self.format = fmt
        self.order_seed = order_seed  # the seed of the training order randomisation (`chosen_position`)
        self.think_tokens = 0  # r1 inference: reasoning tokens generated before the verdict
        self.pool_token = "<|im_end|>"  # the Encoder's turn-closing token
        self.reward_stats: dict | None = None  # wins have no calibrated scale (normalize is the identity)
        self.order: dict | None = None  # the training run's order summary, recorded in basereward.json
        self.base_dir: str | None = None

    @property
    def backbone(self) -> nn.Module:
        """The model without its LM head (a property: registering it twice would duplicate the state dict)."""
        return self.lm.model

    @classmethod
    def from_backbone(
        cls, model_dir, fmt="seed", *, order_seed=0, dtype=torch.float32, attn_implementation="sdpa"
    ):
        model = cls(load_lm(model_dir, dtype, attn_implementation), model_type_of(model_dir), fmt, order_seed)
        model.base_dir = str(Path(model_dir).resolve())
        return model

    def forward(self, jb: JudgeBatch) -> torch.Tensor:
        """(N, 2) fp32 per training judge call: [mean cross-entropy of its answer tokens, verdict margin (logit of
        the right verdict minus the wrong one's)]. The LM head runs only where a loss or verdict is read."""
        h = self.hidden(jb.batch)
        head = self.lm.lm_head
        h = h.to(head.weight.dtype)  # bf16-pure casts the backbone only: the LM head keeps its fp32 weights
        loss = tail_cross_entropy(head, h, jb.batch, jb.answer_lengths)
        b = jb.batch
        before = b.score_cols - jb.answer_lengths + jb.verdict_at  # the column just before the verdict token
        v = head(h[b.score_rows, before]).float()[:, jb.choices]
        right = v.gather(1, jb.target[:, None])[:, 0]
        return torch.stack([loss, 2 * right - v.sum(1)], dim=1)

    def verdict_logits(self, batch: Batch, choices: Sequence[int]) -> torch.Tensor:
        """(N, 2) logits of the `choices` tokens ("1", "2") after the last token of each judge call."""
        h = self.hidden(batch)[batch.score_rows, batch.score_cols]
        return self.lm.lm_head(h.to(self.lm.lm_head.weight.dtype)).float()[:, list(choices)]

    def save(self, out_dir: str | Path, processor=None, state_dict: dict | None = None) -> Path:
        """The checkpoint directory (module docstring); `state_dict`: full weights (keys "lm.*") to write instead
        of the module's own."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        sd = None
        if state_dict is not None:
            sd = {k.removeprefix("_orig_mod.").removeprefix("lm."): v for k, v in state_dict.items()}
        self.lm.save_pretrained(out, state_dict=sd, safe_serialization=True)
        if processor is not None:
            from basereward.model.processor import save_processor

            save_processor(processor, out)
        (out / META_FILE).write_text(json.dumps(self.metadata(), indent=2) + "\n")
        return out

    def metadata(self) -> dict:
        import transformers

        return {
            "format_version": FORMAT_VERSION,
            "paradigm": "generative",
            "model_type": self.model_type,
            "generative": {
                "format": self.format,
                "order_seed": self.order_seed,
                "verdicts": list(VERDICTS),
                "think_tokens": self.think_tokens,
            },
            "order": self.order,
            "versions": {
                "basereward": _own_version(),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "python": platform.python_version(),
            },
        }


def load_lm(model_dir, dtype=torch.float32, attn_implementation="sdpa") -> nn.Module:
    """The full generation model, LM head included; all or nothing, as `backbone.load_backbone`."""
    import transformers

    from basereward.model.fast_vision import enable

    quiet_transformers()
    refuse_pickled_weights(model_dir)
    model_type = model_type_of(model_dir)
    cls = getattr(transformers, LM_CLASSES.get(model_type, "AutoModelForCausalLM"))
    lm, info = cls.from_pretrained(
        model_dir,
        dtype=dtype,
        attn_implementation=attn_implementation,
        trust_remote_code=False,
        use_safetensors=True,
        output_loading_info=True,
    )
    check_loading_info(model_dir, info)  # a missing lm_head.weight is an error here: the judge needs it
    lm.config.use_cache = False
    enable(lm.model)
    return lm


def paradigm_of(model_dir: str | Path) -> str:
    """basereward.json's "paradigm" ("naive" when absent: checkpoints written before paradigms existed). A file
    that does not parse is left to the naive reader, which names what is wrong with it."""
    path = Path(model_dir) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return "naive"
    paradigm = meta.get("paradigm", "naive") if isinstance(meta, dict) else "naive"
    if paradigm not in PARADIGMS:
        raise DataError(f"{path}: field paradigm {paradigm!r} is not one of {list(PARADIGMS)}")
    return paradigm


def load_generative(model_dir: str | Path, *, device: str | None = None, dtype=torch.float32):
    """A generative checkpoint directory -> (GenerativeModel in eval mode, processor)."""
    from basereward.model.processor import load_processor

    path = Path(model_dir) / META_FILE
    meta = json.loads(path.read_text())
    gen = meta.get("generative")
    if not isinstance(gen, dict) or gen.get("format") not in GENERATIVE_FORMATS:
        raise DataError(f"{path}: field generative must be an object with a format in {GENERATIVE_FORMATS}")
    if not isinstance(meta.get("model_type"), str):
        raise DataError(f"{path}: field model_type must be a string, got {meta.get('model_type')!r}")
    think = gen.get("think_tokens", 0)
    if not isinstance(think, int) or isinstance(think, bool) or think < 0:
        raise DataError(f"{path}: field generative.think_tokens must be an integer >= 0, got {think!r}")
    model = GenerativeModel(
        load_lm(model_dir, dtype), meta["model_type"], gen["format"], gen.get("order_seed", 0)
    )
    model.order, model.think_tokens = meta.get("order"), think
    model.base_dir = str(Path(model_dir).resolve())
    if device is not None:
        model.to(device)
    model.eval()
    return model, load_processor(model_dir, meta["model_type"])
