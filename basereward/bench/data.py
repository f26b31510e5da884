"""Deterministic benchmark workloads: images, prompts of a target length, responses of exact token lengths.

Shapes (docs/performance.md §5): a 448x448 image (256 image tokens) + ~32 text tokens -> P ~ 288; responses
of 72 tokens (P:C = 4:1) or lognormal lengths (median 72, clipped to 16-288); 4 pairs per step; groups of G = 8.
Responses are token ids drawn from the BPE's ordinary ids (not text), so their length is exact and identical for every
variant; each ends with the scored `<|im_end|>`. Prompts go through the real processor (chat template, image
resize, pad expansion), exactly like training data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

WORDS = (
    "what colour is the shape in this image and how many of them are on the left or right side ? describe "
    "it with a single word answer"
).split()


@dataclass(frozen=True)
class Workload:
    image_px: int = 448
    prompt_text_tokens: int = 32  # non-image tokens of the prompt, chat scaffolding included
    response_len: int = 72
    lengths: str = "fixed"  # fixed | lognormal
    pairs_per_step: int = 4
    group: int = 8
    distinct_batches: int = 2  # steps cycle through this many different batches
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def max_pixels(self) -> int:
        return self.image_px * self.image_px


def write_images(out_dir: str | Path, n: int, px: int, seed: int = 0) -> list[str]:
    """n deterministic noise images (noise so that no two patches are alike), saved as PNG."""
    import numpy as np
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = out / f"img{i}_{px}.png"
        if not p.is_file():
            Image.fromarray(rng.integers(0, 256, (px, px, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def response_lengths(w: Workload, n: int, salt: int) -> list[int]:
    import torch

    if w.lengths == "fixed":
        return [w.response_len] * n
    if w.lengths != "lognormal":
        raise ValueError(f"lengths must be fixed or lognormal, got {w.lengths!r}")
    g = torch.Generator().manual_seed(w.seed * 1000 + salt)
    z = torch.randn(n, generator=g)
    lo, hi = max(2, w.response_len // 4 - 2), w.response_len * 4  # 16..288 around a median of 72
    return [int(min(hi, max(lo, round(w.response_len * math.exp(0.6 * float(x)))))) for x in z]


def _prompt_sample(encoder, image: str, target: int):
    """A Sample whose prompt has about `target` non-image tokens (grown word by word)."""
    from basereward.types import ImageRef, Sample

    words: list[str] = []
    while True:
        text = "<image>\n" + " ".join(words)
        s = Sample([{"role": "user", "content": text}], ["x"], [ImageRef(path=image)])
        enc = encoder.prompt(s)
        n_text = sum(1 for t in (enc.mm_token_type_ids or [0] * len(enc.input_ids)) if t == 0)
        if n_text >= target or len(words) > 200:
            return enc
        words.append(WORDS[len(words) % len(WORDS)])


def _response_ids(encoder, length: int, gen) -> list[int]:
    import torch

    low, high = 7, len(encoder.tokenizer)  # ids 0-6 are the special tokens
    return torch.randint(low, high, (length - 1,), generator=gen).tolist() + [encoder.end_id]


def encode(encoder, images: list[str], w: Workload, per_prompt: int, n_prompts: int) -> list:
    """`n_prompts` EncodedSamples with `per_prompt` responses each (2 = a pair [chosen, rejected], G = a group)."""
    import torch

    from basereward.template import EncodedSample

    out = []
    for i in range(n_prompts):
        prompt = _prompt_sample(encoder, images[i % len(images)], w.prompt_text_tokens)
        gen = torch.Generator().manual_seed(w.seed * 7919 + i)
        lens = response_lengths(w, per_prompt, salt=i)
        out.append(EncodedSample(prompt, [_response_ids(encoder, n, gen) for n in lens], id=f"bench{i}"))
    return out


def step_batches(samples: list, per_step: int) -> list[list]:
    return [samples[i : i + per_step] for i in range(0, len(samples), per_step)]


def split_pairs(pairs):
    from basereward.template import EncodedSample

    chosen = [EncodedSample(p.prompt, [p.responses[0]]) for p in pairs]
    rejected = [EncodedSample(p.prompt, [p.responses[1]]) for p in pairs]
    return chosen, rejected
