"""Model and data builders for scripts/gpu_bench.py (docs/performance.md §6), importable without a GPU.

- `qwen7b_config`: the published Qwen2.5-VL-7B-Instruct architecture, randomly initialised (no download), at full
  or reduced depth (training uses LLM 6 layers / ViT 8: MFU depends on width, not depth).
- `synthetic_pairs` / `synthetic_groups`: EncodedSamples made of token ids and random pixel values, shaped like
  real processor output: an image of 896 x 784 px = 64 x 56 patches = 32 x 28 = 896 merged image tokens, plus
  128 text tokens (P = 1,024); responses of 256 tokens (or lognormal around 256) ending with <|im_end|>.
- `variant_flops`: the analytic FLOPs (basereward.bench.flops) of each GPU variant on those batches.
"""

from __future__ import annotations

import math

from basereward.bench import flops

# Qwen2's real special-token ids, so the synthetic ids look like a real checkpoint's
IDS = dict(
    pad=151643,
    im_start=151644,
    im_end=151645,
    vision_start=151652,
    vision_end=151653,
    image=151655,
    video=151656,
)
PATCH_IN = 3 * 2 * 14 * 14
# --smoke-cpu: the same code paths at toy width, so the whole script can be exercised on a CPU
SMOKE = dict(hidden=128, heads=4, kv_heads=2, head_dim=32, ffn=256, v_hidden=64, v_ffn=128, v_out=128)


def dims_for(layers: int, v_depth: int, smoke: bool = False) -> flops.Dims:
    import dataclasses

    d = flops.qwen2_5_vl_7b(layers, v_depth)
    if smoke:
        d = dataclasses.replace(d, **SMOKE, v_fullatt=(v_depth - 1,))
    return d


def qwen7b_config(layers: int = 28, v_depth: int = 32, smoke: bool = False):
    from transformers import Qwen2_5_VLConfig

    d = dims_for(layers, v_depth, smoke)
    half = d.head_dim // 2  # mrope sections (t, h, w) sum to head_dim / 2; 7B: [16, 24, 24]
    text = dict(
        vocab_size=d.vocab,
        hidden_size=d.hidden,
        intermediate_size=d.ffn,
        num_hidden_layers=d.layers,
        num_attention_heads=d.heads,
        num_key_value_heads=d.kv_heads,
        max_position_embeddings=128000,
        rms_norm_eps=1e-6,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 1e6,
            "mrope_section": [half // 4, 3 * half // 8, 3 * half // 8],
        },
        bos_token_id=IDS["pad"],
        pad_token_id=IDS["pad"],
        eos_token_id=IDS["im_end"],
        tie_word_embeddings=False,
        initializer_range=0.02,
    )
    vision = dict(
        depth=d.v_depth,
        hidden_size=d.v_hidden,
        intermediate_size=d.v_ffn,
        in_channels=3,
        num_heads=4 if smoke else 16,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        out_hidden_size=d.v_out,
        fullatt_block_indexes=list(d.v_fullatt),
        tokens_per_second=2,
        initializer_range=0.02,
    )
    cfg = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=IDS["image"],
        video_token_id=IDS["video"],
        vision_start_token_id=IDS["vision_start"],
        vision_end_token_id=IDS["vision_end"],
    )
    cfg._attn_implementation = "sdpa"
    return cfg, d


def synthetic_prompt(gen, text_tokens: int = 128, grid: tuple[int, int, int] = (1, 64, 56)):
    """A PromptEncoding: text ids, <|vision_start|>, the image pads, <|vision_end|>, more text."""
    import torch

    from basereward.template import PromptEncoding

    t, h, w = grid
    n_img = t * h * w // 4
    text = torch.randint(0, 151000, (text_tokens - 2,), generator=gen).tolist()
    half = len(text) // 2
    ids = text[:half] + [IDS["vision_start"]] + [IDS["image"]] * n_img + [IDS["vision_end"]] + text[half:]
    types = [0] * (half + 1) + [1] * n_img + [0] * (len(text) - half + 1)
    return PromptEncoding(
        input_ids=ids,
        mm_token_type_ids=types,
        pixel_values=torch.randn(t * h * w, PATCH_IN, generator=gen),
        image_grid_thw=torch.tensor([[t, h, w]]),
    )


def response_lengths(gen, n: int, length: int, lognormal: bool) -> list[int]:
    import torch

    if not lognormal:
        return [length] * n
    z = torch.randn(n, generator=gen).tolist()
    return [int(min(4 * length, max(length // 4, round(length * math.exp(0.6 * x))))) for x in z]


def synthetic_samples(
    n_prompts: int,
    per_prompt: int,
    *,
    text_tokens: int = 128,
    grid=(1, 64, 56),
    response_len: int = 256,
    lognormal: bool = False,
    seed: int = 0,
) -> list:
    """n_prompts EncodedSamples with per_prompt responses each (2 = a pair, G = a group)."""
    import torch

    from basereward.template import EncodedSample

    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_prompts):
        prompt = synthetic_prompt(gen, text_tokens, grid)
        lens = response_lengths(gen, per_prompt, response_len, lognormal)
        responses = [
            torch.randint(0, 151000, (n - 1,), generator=gen).tolist() + [IDS["im_end"]] for n in lens
        ]
        out.append(EncodedSample(prompt, responses, id=f"gpu{i}"))
    return out


def variant_flops(variant: str, samples: list, dims: flops.Dims) -> float:
    """Analytic FLOPs of one step of a GPU variant (train: B0 B1 T4 T5; score: S0 S1 S3) on `samples`."""
    from basereward.bench.data import split_pairs
    from basereward.collate import collate_padded, collate_shared

    def call(batch, layout, head_all):
        d = flops.describe_batch(batch, layout)
        d["head_positions"] = batch.input_ids.numel() if head_all else batch.num_rewards
        return d

    pad = IDS["pad"]
    if variant == "B0":
        chosen, rejected = split_pairs(samples)
        calls = [
            call(collate_padded(chosen, pad), "padded", True),
            call(collate_padded(rejected, pad), "padded", True),
        ]
        return flops.train_flops(calls, dims)
    if variant == "B1":
        return flops.train_flops([call(collate_padded(samples, pad), "padded", True)], dims)
    if variant in ("T4", "T5"):
        calls = [call(collate_shared(samples, pad), "shared", False)]
        return flops.train_flops(calls, dims, vision_trained=variant == "T4")
    shared = variant == "S3"
    b = (collate_shared if shared else collate_padded)(samples, pad)
    d = call(b, "shared" if shared else "padded", variant == "S0")
    return flops.batch_forward_flops(
        d["rows"], d["grid_thw"], dims, head_positions=d["head_positions"], lm_head=variant == "S0"
    )
