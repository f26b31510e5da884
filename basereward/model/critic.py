"""The critic-based reward model (`paradigm: critic`, MM-RLHF-Reward's design): the backbone keeps its LM head and
first writes a critique of a response; then a reward head (the naive model's MLP) reads the last token of prompt +
response + critique. Its scorer is basereward/model/critic_scorer.py, its training pieces basereward/critic_train.py;
docs/recipe.md §4 says how to train and evaluate one.

One response's sequence: the naive model's (the sample's chat-template render with its images, the response, its
`<|im_end|>`), then a second exchange asking for the critique, whose closing token the head reads:

    {prompt}{response}<|im_end|>\\n<|im_start|>user\\n{REQUEST}<|im_end|>\\n<|im_start|>assistant\\n{critique}<|im_end|>

The request and the critique are appended to the response's tokens (`CriticFormat`), so a sample's K responses
still share its prompt and images in the "shared" layout (`basereward.collate`): each response with its critique is
one segment after the prompt.

Training (teacher forcing on the data's critiques): Bradley-Terry on the head's rewards, with the naive loss's
options, plus `critic.sft_weight` x the cross-entropy of the critique tokens and their closing `<|im_end|>` (the mean
over a response's tokens, then over the responses that have a critique). A response without a critique in the data
is scored with an empty one and adds no cross-entropy. Inference generates the critique greedily, at most
`critic.max_critique_tokens` tokens, stopping at `<|im_end|>`, then scores the sequence above.

Checkpoint: config.json + model.safetensors (the whole generation model, HF layout, loadable by transformers
alone), head.safetensors, the processor files, and basereward.json {"paradigm": "critic", "head", "hidden_size",
"pooling", "critic": {"max_critique_tokens", "request"}, "reward_stats", "versions"}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from basereward.collate import Batch
from basereward.config import HeadConfig
from basereward.model.backbone import hidden_size, model_type_of
from basereward.model.generative import GenerativeModel, load_lm, tail_cross_entropy
from basereward.model.head import RewardHead
from basereward.model.reward_model import HEAD_FILE, META_FILE, RewardModel, _load_strict, read_metadata
from basereward.template import EncodedSample, Encoder
from basereward.types import DataError

REQUEST = (
    "Critique the response above: what does the query (and the image, if any) ask for, and is the response "
    "correct, helpful and faithful to the image?"
)


class CriticFormat:
    """Token ids of the critique exchange for one checkpoint's processor (through its `Encoder`)."""

    def __init__(self, encoder: Encoder, request: str = REQUEST):
        self.encoder, self.request = encoder, request
        # the special tokens in this text are the tokenizer's own (a Qwen tokenizer never splits them)
        self.ask_ids = encoder.response(f"\n<|im_start|>user\n{request}<|im_end|>\n<|im_start|>assistant\n")[
            :-1
        ]

    def ask(self, response: list[int]) -> list[int]:
        """A response's tokens (ending with `<|im_end|>`) and the request: where the critique is generated."""
        return response + self.ask_ids

    def critique_ids(self, text: str | None) -> list[int]:
        """A critique's tokens with the closing `<|im_end|>`; none for a missing critique."""
        return self.encoder.response(text) if text else []

    def scored(self, response: list[int], critique: list[int]) -> list[int]:
        """The tokens the head reads after the prompt: response, request, critique and its `<|im_end|>` (the
        closing token alone when the critique is empty)."""
        return self.ask(response) + (critique or [self.encoder.end_id])

    def example(self, enc: EncodedSample, critiques) -> tuple[EncodedSample, list[int]]:
        """A training sample: each response followed by its critique from the data (None: empty), and the number
        of supervised critique tokens per response (0 for a missing critique)."""
        ids = [self.critique_ids(c) for c in critiques]
        responses = [self.scored(r, c) for r, c in zip(enc.responses, ids)]
        return EncodedSample(enc.prompt, responses, enc.id), [len(c) for c in ids]


@dataclass
class CriticBatch:
    """Collated training samples: the last `critique_lengths[i]` tokens of response i are its critique (and its
    closing token), supervised by cross-entropy; the head reads each response's last token as usual."""

    batch: Batch
    critique_lengths: torch.Tensor

    def to(self, device) -> CriticBatch:
        return CriticBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def response_lengths(self) -> torch.Tensor:
        return self.batch.response_lengths


class CriticModel(nn.Module):
    """A Qwen2.5-VL / Qwen2-VL ForConditionalGeneration (or a text causal LM) that writes critiques, and a reward
    head reading its final hidden state."""

    # the backbone and head run as the naive model's do, in either layout (needs `backbone`, `head`, `model_type`)
    hidden = RewardModel.hidden
    rewards = RewardModel.rewards
    shared_position_ids = RewardModel.shared_position_ids
    dtype_of_compute = RewardModel.dtype_of_compute
    backbone = GenerativeModel.backbone  # the LM without its head (`lm.model`), as the judge's
    merged_lora = None  # read by the naive metadata; LoRA is not wired for the critic

    def __init__(self, lm: nn.Module, head: RewardHead, model_type: str, max_critique_tokens: int = 128):
        super().__init__()
        self.lm, self.head = lm, head
        self.model_type = model_type
        self.max_critique_tokens = max_critique_tokens
        self.request = REQUEST
        self.pool_token = "<|im_end|>"  # the Encoder's turn-closing token
        self.reward_stats: dict | None = None
        self.base_dir: str | None = None

    @classmethod
    def from_backbone(
        cls,
        model_dir,
        head_cfg: HeadConfig = HeadConfig(),
        *,
        seed: int = 0,
        max_critique_tokens: int = 128,
        dtype=torch.float32,
        attn_implementation="sdpa",
    ) -> CriticModel:
        """The pretrained LM from `model_dir` and a new head, initialised as the naive model's (seeded)."""
        lm = load_lm(model_dir, dtype, attn_implementation)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            head = RewardHead(hidden_size(lm.model), head_cfg)
        model = cls(lm, head, model_type_of(model_dir), max_critique_tokens)
        model.base_dir = str(Path(model_dir).resolve())
        return model

    def forward(self, x: Batch | CriticBatch) -> torch.Tensor:
        """A Batch (scoring: responses already followed by their critiques): rewards (N,) fp32. A CriticBatch
        (training): (N, 2) fp32, [reward, mean cross-entropy of the critique tokens (0 without a critique)]; the
        LM head runs only at the critique tokens."""
        batch = x.batch if isinstance(x, CriticBatch) else x
        h = self.hidden(batch)
        rewards = self.rewards(h, batch)
        if not isinstance(x, CriticBatch):
            return rewards
        return torch.stack(
            [rewards, tail_cross_entropy(self.lm.lm_head, h, batch, x.critique_lengths)], dim=1
        )

    def save(self, out_dir: str | Path, processor=None, state_dict: dict | None = None) -> Path:
        """The checkpoint directory (module docstring); `state_dict`: full weights (keys "lm.*", "head.*") to
        write instead of the module's own."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        lm_sd, head_sd = None, self.head.state_dict()
        if state_dict is not None:
            sd = {k.removeprefix("_orig_mod."): v for k, v in state_dict.items()}
            lm_sd = {k[3:]: v for k, v in sd.items() if k.startswith("lm.")}
            head_sd = {k[5:]: v for k, v in sd.items() if k.startswith("head.")}
        if set(head_sd) != set(
            self.head.state_dict()
        ):  # a state dict without the head must not pass silently
            raise ValueError(
                f"state_dict: head keys {sorted(head_sd)}, expected {sorted(self.head.state_dict())}"
            )
        self.lm.save_pretrained(out, state_dict=lm_sd, safe_serialization=True)
        save_file(
            {k: v.detach().float().contiguous().cpu() for k, v in head_sd.items()}, str(out / HEAD_FILE)
        )
        if processor is not None:
            from basereward.model.processor import save_processor

            save_processor(processor, out)
        (out / META_FILE).write_text(json.dumps(self.metadata(), indent=2) + "\n")
        return out

    def metadata(self) -> dict:
        meta = RewardModel.metadata(
            self
        )  # head, hidden size, pooling, reward_stats, versions (reads the same fields)
        return {
            "format_version": meta.pop("format_version"),
            "paradigm": "critic",
            **meta,
            "critic": {"max_critique_tokens": self.max_critique_tokens, "request": self.request},
        }


def load_critic(model_dir: str | Path, *, device: str | None = None, dtype=torch.float32):
    """A critic checkpoint directory -> (CriticModel in eval mode, processor). basereward.json is checked as a
    naive checkpoint's is (head, pooling), plus its "critic" object."""
    from basereward.model.processor import load_processor

    path = Path(model_dir) / META_FILE
    meta = read_metadata(model_dir, paradigm="critic")
    critic = meta.get("critic")
    limit = critic.get("max_critique_tokens") if isinstance(critic, dict) else None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise DataError(
            f"{path}: field critic must be an object with max_critique_tokens >= 1, got {critic!r}"
        )
    if not isinstance(critic.get("request", REQUEST), str):
        raise DataError(f"{path}: field critic.request must be a string")
    lm = load_lm(model_dir, dtype)
    hidden = hidden_size(lm.model)
    if meta.get("hidden_size") is not None and meta["hidden_size"] != hidden:
        raise DataError(f"{path}: field hidden_size is {meta['hidden_size']}, the model's is {hidden}")
    head = RewardHead(hidden, HeadConfig(**meta["head"]))
    _load_strict(head, Path(model_dir) / HEAD_FILE, "the reward head")
    model = CriticModel(lm, head, meta["model_type"], limit)
    model.request = critic.get("request", REQUEST)
    model.reward_stats = meta.get("reward_stats")
    model.base_dir = str(Path(model_dir).resolve())
    if device is not None:
        model.to(device)
    model.eval()
    return model, load_processor(model_dir, meta["model_type"])
