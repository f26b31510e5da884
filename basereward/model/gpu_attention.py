"""Attention for the prefix-shared layout without a dense L x L mask, for GPUs. On CPU, text attention stays SDPA
with the 4-D boolean mask of `collate_shared` (exact; FlexAttention has no CPU backward), and only the vision tower
comes here, with the `runs` backend (`basereward.model.fast_vision` switches it on at load).

How it plugs in (transformers' AttentionInterface; no model code is copied):
- text attention is registered as `TEXT_IMPL`. `enable(model)` sets `model.attention_adapter`, which
  `RewardModel.forward` calls: it builds a `SegmentPlan` from the batch and passes it as the `prefix_plan` keyword,
  which transformers forwards to every attention call. The 4-D mask is replaced by the 2-D padding mask; for an
  implementation it does not know, transformers builds no mask at all.
- vision attention is registered as `VISION_IMPL`, whose name contains "flash" so that Qwen2.5-VL's vision tower
  hands it `cu_seq_lens` (its windows / images) instead of looping over chunks with one SDPA call each.

Backends (`choose_backend` takes the first that imports and passes `self_test` against `reference`):
  flash_attn    flash_attn_varlen_func; causal masks are bottom-right aligned when q_len != k_len (what we need)
  torch_varlen  torch.nn.attention.varlen.varlen_attn (the same FlashAttention kernels, inside PyTorch)
  flex          FlexAttention with a BlockMask from the segment ids (compiled on CUDA; text only)
  runs          one batched SDPA call per run of consecutive equal-length units (any device; the CPU vision default)
  reference     a loop of SDPA calls, one per unit: slow, exact, runs on CPU (tests and the self-test)

Units (varlen backends): a row's prompt is one causal unit; response k is a unit whose queries are its tokens and
whose keys are [prompt; response k], causal bottom-right (query j sees the whole prompt and response tokens <= j).
The prompt's K/V are gathered once more per response, small next to the attention itself. A padded-layout row is a
single causal unit of its valid tokens; padding is in no unit and gets a zero attention output.
"""

from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

TEXT_IMPL = "basereward_prefix"
VISION_IMPL = "basereward_flash_vision"
BACKENDS = ("flash_attn", "torch_varlen", "flex", "runs", "reference")
_state = {"compiled_flex": None}


# ---- segments and plans


def segments_of(batch) -> torch.Tensor:
    """(R, L) segment ids of a collated Batch: -1 padding, 0 prompt (or a whole padded-layout row), k >= 1 the
    tokens of response k of that row."""
    shared = batch.position_shift is not None
    valid = batch.valid_mask if shared else batch.attention_mask
    seg = torch.where(valid.cpu() > 0, 0, -1)
    if shared:
        ends, lens = batch.score_cols.cpu().tolist(), batch.response_lengths.cpu().tolist()
        for i, (r, k) in enumerate(zip(batch.score_rows.cpu().tolist(), batch.response_index.cpu().tolist())):
            seg[r, ends[i] - lens[i] + 1 : ends[i] + 1] = k + 1
    return seg


@dataclass
class SegmentPlan:
    backend: str
    shape: tuple[int, int]  # (rows, length)
    # flat (row * L + position) indices of every unit's queries, unit by unit
    q_index: torch.Tensor | None = None
    k_index: torch.Tensor | None = None  # the same for keys (a prompt appears once per unit that sees it)
    cu_q: torch.Tensor | None = None  # int32 (units + 1,)
    cu_k: torch.Tensor | None = None
    max_q: int = 0
    max_k: int = 0
    block_mask: object | None = None  # flex only


def build_plan(segments: torch.Tensor, backend: str, device) -> SegmentPlan:
    rows, length = segments.shape
    plan = SegmentPlan(backend=backend, shape=(rows, length))
    if backend == "flex":
        plan.block_mask = _block_mask(segments.to(device), device)
        return plan
    # loops run over units (a handful per row), the token work is tensor ops: cheap enough to redo every forward
    q_parts, k_parts = [], []
    for r in range(rows):
        row = segments[r]
        prompt = (row == 0).nonzero().flatten() + r * length
        if prompt.numel():
            q_parts.append(prompt)
            k_parts.append(prompt)
        for s in row.unique().tolist():
            if s > 0:
                resp = (row == s).nonzero().flatten() + r * length
                q_parts.append(resp)
                k_parts.append(torch.cat([prompt, resp]))
    q_lens, k_lens = [len(x) for x in q_parts], [len(x) for x in k_parts]
    plan.q_index, plan.k_index = torch.cat(q_parts).to(device), torch.cat(k_parts).to(device)
    plan.cu_q = torch.tensor([0, *itertools.accumulate(q_lens)], dtype=torch.int32, device=device)
    plan.cu_k = torch.tensor([0, *itertools.accumulate(k_lens)], dtype=torch.int32, device=device)
    plan.max_q, plan.max_k = max(q_lens), max(k_lens)
    return plan


def _block_mask(segments: torch.Tensor, device):
    from torch.nn.attention.flex_attention import create_block_mask

    def allowed(b, h, q, kv):
        sq, sk = segments[b, q], segments[b, kv]
        return ((kv <= q) & (sk >= 0) & ((sk == 0) | (sk == sq))) | ((sq < 0) & (q == kv))

    rows, length = segments.shape
    return create_block_mask(allowed, rows, None, length, length, device=device)


# ---- varlen kernels: (T, H, D) tensors, cumulative lengths -> (Tq, H, D)


def varlen(backend: str, q, k, v, cu_q, cu_k, max_q: int, max_k: int, scale: float | None, causal: bool):
    if backend == "flash_attn":
        from flash_attn import flash_attn_varlen_func

        return flash_attn_varlen_func(
            q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=0.0, softmax_scale=scale, causal=causal
        )
    if backend == "torch_varlen":
        from torch.nn.attention.varlen import varlen_attn

        params = inspect.signature(varlen_attn).parameters
        kw = {"scale": scale}
        # newer PyTorch: causal = window (-1, 0), bottom-right like FlashAttention
        if "window_size" in params:
            kw["window_size"] = (-1, 0) if causal else (-1, -1)
        elif causal:
            kw["is_causal"] = True
        if q.shape[1] != k.shape[1]:
            if "enable_gqa" in params:
                kw["enable_gqa"] = True
            else:
                k, v = (x.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for x in (k, v))
        return varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, **kw)
    if backend == "runs":
        return _runs(q, k, v, cu_q, cu_k, scale, causal)
    if backend == "reference":
        outs = []
        bounds_q, bounds_k = cu_q.tolist(), cu_k.tolist()
        for i in range(len(bounds_q) - 1):
            qi = q[bounds_q[i] : bounds_q[i + 1]].transpose(0, 1)[None]
            ki = k[bounds_k[i] : bounds_k[i + 1]].transpose(0, 1)[None]
            vi = v[bounds_k[i] : bounds_k[i + 1]].transpose(0, 1)[None]
            lq, lk = qi.shape[2], ki.shape[2]
            mask = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(lk - lq) if causal else None
            o = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=mask, scale=scale, enable_gqa=True)
            outs.append(o[0].transpose(0, 1))
        return torch.cat(outs)
    raise ValueError(f"no varlen kernel for backend {backend!r}")


def _runs(q, k, v, cu_q, cu_k, scale: float | None, causal: bool):
    """Consecutive units of equal (query, key) length as one batched SDPA call each: the images of a batch (or
    the windows inside one image) usually have equal lengths, so a batch of 32 images costs one call per layer
    instead of 32. Exact: a run is the same attention, stacked."""
    lq = (cu_q[1:] - cu_q[:-1]).tolist()
    lk = (cu_k[1:] - cu_k[:-1]).tolist()
    bq, bk = cu_q.tolist(), cu_k.tolist()
    heads, kv_heads, d = q.shape[1], k.shape[1], q.shape[2]
    outs, i = [], 0
    while i < len(lq):
        j = i + 1
        while j < len(lq) and lq[j] == lq[i] and lk[j] == lk[i]:
            j += 1
        m, a, b = j - i, lq[i], lk[i]
        if a:
            qi = q[bq[i] : bq[j]].view(m, a, heads, d).transpose(1, 2)
            ki = k[bk[i] : bk[j]].view(m, b, kv_heads, d).transpose(1, 2)
            vi = v[bk[i] : bk[j]].view(m, b, kv_heads, d).transpose(1, 2)
            mask = torch.ones(a, b, dtype=torch.bool, device=q.device).tril(b - a) if causal else None
            o = F.scaled_dot_product_attention(
                qi, ki, vi, attn_mask=mask, scale=scale, enable_gqa=heads != kv_heads
            )
            outs.append(o.transpose(1, 2).reshape(m * a, heads, d))
        i = j
    return torch.cat(outs) if outs else q.new_zeros(0, heads, d)


# ---- the attention functions registered with transformers


def prefix_attention(
    module, query, key, value, attention_mask, scaling=None, dropout=0.0, prefix_plan=None, **kwargs
):
    """Text attention. (B, H, L, D) in, (B, L, H, D) out, as transformers' attention functions do."""
    if prefix_plan is None:  # a call without a plan (e.g. generation): plain SDPA with whatever mask came
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    plan: SegmentPlan = prefix_plan
    b, h, length, d = query.shape
    if plan.backend == "flex":
        return _flex()(
            query, key, value, block_mask=plan.block_mask, scale=scaling, enable_gqa=h != key.shape[1]
        ).transpose(1, 2), None
    flat = lambda x: x.transpose(1, 2).reshape(b * length, x.shape[1], d)  # noqa: E731
    q, k, v = flat(query), flat(key), flat(value)
    out = varlen(
        plan.backend,
        q.index_select(0, plan.q_index),
        k.index_select(0, plan.k_index),
        v.index_select(0, plan.k_index),
        plan.cu_q,
        plan.cu_k,
        plan.max_q,
        plan.max_k,
        scaling,
        causal=True,
    )
    full = torch.zeros_like(q).index_copy(0, plan.q_index, out.to(q.dtype))
    return full.view(b, length, h, d), None


def vision_attention(
    module,
    query,
    key,
    value,
    attention_mask,
    scaling=None,
    dropout=0.0,
    cu_seq_lens_q=None,
    max_length_q=None,
    **kwargs,
):
    """Vision attention over the tower's windows / images given as `cu_seq_lens`: (1, H, N, D) -> (1, N, H, D)."""
    backend = getattr(module, "varlen_backend", "reference")  # set per tower by `set_vision_backend`
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # (N, H, D)
    cu = cu_seq_lens_q.to(torch.int32)
    max_len = int(max_length_q) if max_length_q is not None else int((cu[1:] - cu[:-1]).max())
    return varlen(backend, q, k, v, cu, cu, max_len, max_len, scaling, causal=False)[None], None


def _flex():
    from torch.nn.attention.flex_attention import flex_attention

    if not torch.cuda.is_available():
        return flex_attention  # CPU: forward only (no CPU backward), used by tests
    if _state["compiled_flex"] is None:
        _state["compiled_flex"] = torch.compile(flex_attention, dynamic=False)
    return _state["compiled_flex"]


def register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(TEXT_IMPL, prefix_attention)
    AttentionInterface.register(VISION_IMPL, vision_attention)


# ---- choosing a backend, switching a model


def available(backend: str, device) -> bool:
    cuda = torch.device(device).type == "cuda"
    try:
        if backend == "flash_attn":
            import flash_attn  # noqa: F401

            return cuda
        if backend == "torch_varlen":
            from torch.nn.attention.varlen import varlen_attn  # noqa: F401

            return cuda
        if backend == "flex":
            from torch.nn.attention.flex_attention import flex_attention  # noqa: F401

            return True
    except ImportError:
        return False
    return backend in ("runs", "reference")


def self_test(
    backend: str,
    device,
    dtype=torch.float32,
    causal: bool = True,
    heads=(4, 2),
    head_dim=64,
    backward: bool = True,
) -> float:
    """Largest difference, relative to the largest reference value, between `backend` and `reference` on a small
    random case: outputs and (with `backward`) the gradients of q, k, v, since training runs through it too.
    Text (causal): two rows with a prompt, two and one responses, padding, GQA heads. Vision (not causal): three
    sequences. Raises whatever the backend raises."""
    gen = torch.Generator().manual_seed(0)
    if causal:
        segments = torch.tensor([[0] * 9 + [1] * 5 + [2] * 7 + [-1] * 3, [0] * 6 + [1] * 11 + [-1] * 7])
        kv_heads, shape = heads[1], lambda h: (2, h, segments.shape[1], head_dim)  # noqa: E731
        valid = (segments >= 0).to(device)[:, :, None, None]

        def attend(name, q, k, v):
            return (
                prefix_attention(None, q, k, v, None, prefix_plan=build_plan(segments, name, device))[0]
                * valid
            )
    else:
        cu = torch.tensor([0, 7, 20, 24], dtype=torch.int32, device=device)
        kv_heads, shape = heads[0], lambda h: (24, h, head_dim)  # noqa: E731

        def attend(name, q, k, v):
            return varlen(name, q, k, v, cu, cu, 13, 13, None, causal=False)

    base = [torch.randn(shape(h), generator=gen) for h in (heads[0], kv_heads, kv_heads)]
    out_shape = (2, segments.shape[1], heads[0], head_dim) if causal else (24, heads[0], head_dim)
    weight = torch.randn(out_shape, generator=gen).to(device)
    results = []
    for name, dt in ((backend, dtype), ("reference", torch.float32)):
        qkv = [x.to(device, dt).requires_grad_(backward) for x in base]
        out = attend(name, *qkv).float()
        grads = torch.autograd.grad((out * weight).sum(), qkv) if backward else ()
        results.append([out, *(g.float() for g in grads)])
    return max(
        float((a - b).abs().max() / b.abs().max().clamp_min(1e-6))
        for a, b in zip(*(map(torch.detach, r) for r in results))
    )


def choose_backend(
    device, preferred: str = "auto", dtype=torch.bfloat16, causal: bool = True, log=print
) -> str:
    """The first backend (of `preferred`, or flash_attn, torch_varlen, flex on CUDA) that passes `self_test`;
    "reference" when none does (CPU)."""
    on_cuda = torch.device(device).type == "cuda"
    auto = ["flash_attn", "torch_varlen"] + (["flex"] if causal else []) if on_cuda else []  # CPU: reference
    order = [preferred] if preferred != "auto" else auto
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    for name in order:
        if not available(name, device):
            log(f"attention backend {name}: not available")
            continue
        try:
            err = self_test(name, device, dtype, causal=causal)
        except Exception as e:  # a kernel that does not run here is skipped, not fatal
            log(f"attention backend {name}: self-test raised {type(e).__name__}: {str(e)[:200]}")
            continue
        log(f"attention backend {name} ({'text' if causal else 'vision'}): self-test max |diff| {err:.2e}")
        if err <= tol:
            return name
    return "reference"


class PrefixAttention:
    """`RewardModel.attention_adapter`: turns a Batch's layout into a SegmentPlan for the registered text attention."""

    def __init__(self, backend: str):
        self.backend = backend

    def __call__(self, batch, inputs: dict) -> dict:
        device = inputs["input_ids"].device
        inputs["prefix_plan"] = build_plan(segments_of(batch), self.backend, device)
        inputs["attention_mask"] = (
            batch.valid_mask if batch.position_shift is not None else batch.attention_mask
        )
        return inputs


def apply(model, text: str | None, vision: str | None) -> None:
    """Switch without self-tests: text backend name or None (stock SDPA, 4-D mask), vision backend or None/
    "reference" (stock per-chunk SDPA)."""
    register()
    has_vision = getattr(model.backbone.config, "vision_config", None) is not None
    impl: dict = {"text_config": TEXT_IMPL if text else "sdpa"}
    if has_vision:
        impl["vision_config"] = VISION_IMPL if vision else "sdpa"
        if vision:
            set_vision_backend(model.backbone, vision)
    model.backbone.set_attn_implementation(impl if has_vision else impl["text_config"])
    model.attention_adapter = PrefixAttention(text) if text else None


def set_vision_backend(backbone, backend: str) -> None:
    """The varlen kernel `vision_attention` uses for this backbone's tower (kept on each attention module, so two
    models in one process can differ)."""
    for module in backbone.visual.modules():
        if hasattr(module, "qkv") and hasattr(module, "proj"):  # Qwen2-VL / Qwen2.5-VL vision attention
            module.varlen_backend = backend


def enable(model, backend: str = "auto", vision_backend: str | None = "auto", log=print) -> dict:
    """Switch a RewardModel to segment-aware attention, choosing backends by self-test. Returns {"text",
    "vision"}. Under "auto" a vision "reference" result keeps the stock per-chunk SDPA loop (the same work); asked
    for explicitly (tests) it routes through VISION_IMPL so the plumbing runs on CPU."""
    device = next(model.parameters()).device
    dtype = next(model.backbone.parameters()).dtype
    text = choose_backend(device, backend, dtype, log=log)
    vision = None
    if vision_backend is not None and getattr(model.backbone.config, "vision_config", None) is not None:
        vision = choose_backend(device, vision_backend, dtype, causal=False, log=log)
    use_vision = vision if vision != "reference" or vision_backend == "reference" else None
    apply(model, text, use_vision)
    return {"text": text, "vision": vision}


def disable(model) -> None:
    apply(model, None, None)
