"""The analytic FLOP model of docs/performance.md §1, applied to a concrete model config and batch.

One multiply-add = 2 FLOPs. Counted: every linear layer of the language model on every token it is run on
(padding included: padded positions are computed), attention as `4 * heads * head_dim` FLOPs per (query, allowed
key) pair and layer, the vision tower (patch embedding, blocks with their windowed or full attention, the merger),
the reward head where it is applied and an LM head where one is computed. Not counted: norms, activations, rotary
embeddings, softmax, the embedding lookup (all small next to the matmuls). Training = 3x forward (backward = 2x);
a frozen vision tower costs its forward only. For Qwen2.5-VL-7B this reproduces the tables of docs/performance.md §1 (131.8 vs 76.3
TFLOP per P = 1,024 / C = R = 256 training pair, 175.7 vs 46.2 TFLOP per G = 8 group; see tests/test_bench.py).

Attention is counted as the work the mask allows (causal; the shared layout's prompt + own response), i.e. what a
kernel that skips masked blocks does. A dense-mask kernel (CPU SDPA) does more for the shared layout, which shows
up as lost efficiency, not as a different prediction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Dims:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    v_hidden: int = 0  # 0 = no vision tower
    v_depth: int = 0
    v_ffn: int = 0
    v_out: int = 0
    v_patch_in: int = 3 * 2 * 14 * 14  # channels * temporal patch * patch * patch
    v_merge: int = 2
    v_window_merged: int = 4  # window side in merged tokens (window_size // merge // patch)
    v_fullatt: tuple[int, ...] = ()
    head_width: int = 0  # reward head inner width (0 = hidden)

    @classmethod
    def from_config(cls, cfg) -> Dims:
        """From a Qwen2.5-VL / Qwen2-VL / Qwen2 config (transformers object or its text/vision sub-configs)."""
        text = getattr(cfg, "text_config", None) or cfg
        hd = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        kw = dict(
            hidden=text.hidden_size,
            layers=text.num_hidden_layers,
            heads=text.num_attention_heads,
            kv_heads=text.num_key_value_heads,
            head_dim=hd,
            ffn=text.intermediate_size,
            vocab=text.vocab_size,
        )
        v = getattr(cfg, "vision_config", None)
        if v is not None:
            v_hidden = getattr(v, "hidden_size", None) or v.embed_dim
            patch, merge = v.patch_size, v.spatial_merge_size
            window = getattr(v, "window_size", None)
            kw.update(
                v_hidden=v_hidden,
                v_depth=v.depth,
                v_merge=merge,
                v_ffn=getattr(v, "intermediate_size", None) or v_hidden * getattr(v, "mlp_ratio", 4),
                v_out=getattr(v, "out_hidden_size", None) or getattr(v, "hidden_size", text.hidden_size),
                v_patch_in=getattr(v, "in_channels", 3) * v.temporal_patch_size * patch * patch,
                v_window_merged=window // merge // patch if window else 0,
                v_fullatt=tuple(getattr(v, "fullatt_block_indexes", None) or range(v.depth)),
            )
        return cls(**kw)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def llm_layer_params(self) -> int:
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        attn = self.hidden * (q + 2 * kv) + (q + 2 * kv) + q * self.hidden  # q/k/v with bias, o without
        return attn + 3 * self.hidden * self.ffn  # SwiGLU: gate, up, down

    @property
    def llm_params(self) -> int:
        """Non-embedding parameters of the language model (N of docs/performance.md §1)."""
        return self.layers * self.llm_layer_params

    @property
    def v_block_params(self) -> int:
        h = self.v_hidden
        return h * 3 * h + h * h + 3 * h * self.v_ffn  # qkv, proj, gated MLP (gate, up, down)


# ---- language model


def llm_flops(tokens: int, attn_pairs: int, d: Dims) -> float:
    """Forward FLOPs of the decoder stack over `tokens` positions with `attn_pairs` allowed (query, key) pairs."""
    return 2.0 * d.llm_params * tokens + 4.0 * d.heads * d.head_dim * d.layers * attn_pairs


def lm_head_flops(tokens: int, d: Dims) -> float:
    return 2.0 * d.hidden * d.vocab * tokens


def reward_head_flops(positions: int, d: Dims) -> float:
    w = d.head_width or d.hidden
    return 2.0 * (d.hidden * w + w) * positions


def causal_pairs(n: int) -> int:
    return n * (n + 1) // 2


def shared_pairs(prompt: int, responses: list[int]) -> int:
    """Allowed pairs of one `[P | r1 .. rK]` row: causal prompt, each response sees the prompt and itself."""
    return causal_pairs(prompt) + sum(r * prompt + causal_pairs(r) for r in responses)


# ---- vision tower


def vision_flops(grid_thw: list[tuple[int, int, int]], d: Dims) -> float:
    """Forward FLOPs of the vision tower for images of patch grids (t, h, w)."""
    if not d.v_hidden:
        return 0.0
    total = 0.0
    for t, h, w in grid_thw:
        n = t * h * w
        total += 2.0 * d.v_patch_in * d.v_hidden * n  # patch embedding
        total += 2.0 * d.v_block_params * n * d.v_depth
        full = n * n  # full-attention blocks attend within the image
        windowed = _window_pairs(t, h, w, d)
        for i in range(d.v_depth):
            total += 4.0 * d.v_hidden * (full if i in d.v_fullatt else windowed)
        merged_in = d.v_hidden * d.v_merge**2
        total += 2.0 * (merged_in * merged_in + merged_in * d.v_out) * (n // d.v_merge**2)
    return total


def _window_pairs(t: int, h: int, w: int, d: Dims) -> int:
    """Sum over windows of (patches in window)^2; windows tile the merged grid, edge windows are partial."""
    if not d.v_window_merged:
        return (t * h * w) ** 2
    mh, mw, ws = h // d.v_merge, w // d.v_merge, d.v_window_merged
    pairs = 0
    for i in range(0, mh, ws):
        for j in range(0, mw, ws):
            patches = min(ws, mh - i) * min(ws, mw - j) * d.v_merge**2
            pairs += patches * patches
    return t * pairs


# ---- whole steps


def batch_forward_flops(
    rows: list[dict], grid_thw: list, d: Dims, *, head_positions: int, lm_head: bool = False
) -> float:
    """Forward FLOPs of one backbone call. `rows`: per row {"width": padded width, "pairs": allowed attention
    pairs}; `grid_thw`: the images the call encodes; `head_positions`: positions the reward head runs on."""
    tokens = sum(r["width"] for r in rows)
    f = llm_flops(tokens, sum(r["pairs"] for r in rows), d) + vision_flops(grid_thw, d)
    f += reward_head_flops(head_positions, d)
    if lm_head:
        f += lm_head_flops(tokens, d)
    return f


def train_flops(calls: list[dict], d: Dims, *, vision_trained: bool = True) -> float:
    """FLOPs of one training step (forward + backward) made of backbone calls (see `batch_forward_flops`)."""
    total = 0.0
    for c in calls:
        fwd = batch_forward_flops(c["rows"], c["grid_thw"], d, head_positions=c["head_positions"])
        vis = vision_flops(c["grid_thw"], d)
        total += 3.0 * (fwd - vis) + (3.0 if vision_trained else 1.0) * vis
    return total


def describe_batch(batch, layout: str) -> dict:
    """Rows/attention pairs/images of a collated `basereward.collate.Batch` (for `batch_forward_flops`)."""
    width = int(batch.input_ids.shape[1])
    rows = []
    if layout == "shared":
        valid = batch.valid_mask.sum(-1).tolist()
        for r in range(batch.input_ids.shape[0]):
            sel = (batch.score_rows == r).nonzero().flatten()
            resp = batch.response_lengths[sel].tolist()
            prompt = int(valid[r]) - sum(resp)
            rows.append({"width": width, "pairs": shared_pairs(prompt, resp)})
    else:
        # a padded row computes its padding too; the causal count covers the valid tokens
        for n in batch.attention_mask.sum(-1).tolist():
            rows.append({"width": width, "pairs": causal_pairs(int(n))})
    grids = [tuple(g) for g in batch.image_grid_thw.tolist()] if batch.image_grid_thw is not None else []
    return {"rows": rows, "grid_thw": grids}


# Qwen2.5-VL-7B-Instruct's published config.json (no download needed: the numbers are all the FLOP model uses)
QWEN2_5_VL_7B = dict(
    hidden=3584,
    layers=28,
    heads=28,
    kv_heads=4,
    head_dim=128,
    ffn=18944,
    vocab=152064,
    v_hidden=1280,
    v_depth=32,
    v_ffn=3420,
    v_out=3584,
    v_window_merged=4,
    v_fullatt=(7, 15, 23, 31),
)


def qwen2_5_vl_7b(layers: int = 28, v_depth: int = 32) -> Dims:
    """7B dims, optionally at reduced depth (full-attention vision blocks kept where they still exist)."""
    full = tuple(i for i in QWEN2_5_VL_7B["v_fullatt"] if i < v_depth) or (v_depth - 1,)
    return Dims(**{**QWEN2_5_VL_7B, "layers": layers, "v_depth": v_depth, "v_fullatt": full})
