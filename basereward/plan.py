"""`basereward plan`: GPU memory per device for a training run, by arithmetic from a `config.json` alone (no
weights, no torch), and whether it fits.

    basereward plan --backbone configs/arch/qwen2.5-vl-7b.json --gpus 8 --strategy fsdp --precision bf16 \\
        --micro-batch-size 2 --max-length 4096 --gradient-checkpointing

Parameters are counted module by module (tests/test_plan.py checks them against the real modules): embeddings,
decoder layers (q/k/v with bias, o without, gate/up/down, two RMSNorms), final norm, the vision tower (patch
Conv3d without bias, blocks, merger) and the reward head. The LM head is not counted: the reward model drops
it.

Memory per GPU, in GiB (2**30 bytes). P = all parameters, T = trained ones, S = GPUs under fsdp (1 under ddp);
w = bytes per weight: fp32 4, bf16 4 (fp32 master weights under autocast, as train.py keeps them), bf16-pure
2; c = compute bytes: fp32 4, else 2. The head stays fp32 in every precision (train.py keeps it so).
- weights     P*w / S. LoRA (--lora R): the base weights stay frozen in that dtype; the adapters, R*(in + out)
              for each of q, k, v, o, gate, up, down of every decoder layer, train.
- gradients   T*w / S: a gradient has its parameter's dtype.
- optimizer   AdamW exp_avg + exp_avg_sq in the parameter dtype: T*2w / S (8 B/param fp32 and bf16, 4
              bf16-pure). The per-tensor `step` scalars stay on the CPU (torch.optim.AdamW, not
              fused/capturable).
- working     fsdp: parameters are all-gathered in the compute dtype one unit at a time (a decoder layer or a
              vision block; the root holds embeddings, patch embedding, merger; the head is its own fp32
              unit): two units at once (current and prefetched), the root (FSDP2 keeps it unsharded from
              forward to backward), one unit's unsharded gradient (in bf16 plus its fp32 copy for the
              reduce-scatter under bf16). Under bf16 that is FSDP2's MixedPrecisionPolicy(param_dtype=bf16,
              reduce_dtype=fp32): the forward then runs on bf16 parameters, so its activations are those of
              bf16-pure. ddp + bf16: autocast caches a bf16 copy of every trained weight it casts and backward
              keeps them (with LoRA the frozen weights' copies too); with checkpointing only the recomputed
              layer's copies exist at a time.
- ddp_buckets more than one GPU under ddp: DDP's flat gradient buckets, a second copy of the gradients.
- activations one micro-batch of B prefix-shared rows [prompt | chosen | rejected] of L tokens, the image
              encoded once per row (--image-tokens merged tokens = 4x as many patches). Per token and decoder
              layer, what autograd saves (tests/test_plan.py measures it): each RMSNorm its fp32 input, 1/rms
              and the normalised input (for its weight's gradient), and its output as the input of each linear
              that reads it (autocast casts it once per linear); attention q, k, v (k and v twice: the varlen
              path gathers the prompt's K/V again per response), the log-sum-exp, its output and o_proj's
              input; the SiLU-gated MLP four tensors of the intermediate width (gate out, SiLU out, up out,
              their product). Plus, at the start of backward, the residual stream's gradient and one gradient
              of the MLP's width. With gradient checkpointing each layer keeps only its input, and backward
              holds one layer's full set at a time while it recomputes it. A trained vision tower adds the
              same per patch and block; a frozen one only the merger's (trained unless --freeze-aligner), with
              or without checkpointing (the trainer removes transformers' input-gradient hooks, which would
              put a frozen tower on the gradient path: model/backbone.py). LoRA adds each adapter's
              rank-wide intermediate, drops what only frozen weights' gradients need (the norms' normalised
              inputs) and, under autocast, holds a transient fp32 copy of o_proj's and down_proj's inputs
              (peft casts them to the fp32 adapters' dtype); with --lora-dropout each adapter also keeps its
              dropped input and the mask.
- overhead    a fixed --overhead-gb, default 2 GiB: CUDA context and kernel images (~0.5-1 GiB), cuBLAS
              workspaces, NCCL buffers, and a margin for the caching allocator's fragmentation.
--cpu-offload (fsdp) moves the sharded weights, gradients and optimizer state to host memory: they leave the
GPU and are reported as cpu_offload_gb (host memory per GPU). Not modelled: the batch's token tensors and
dense attention masks (the GPU path is varlen; on the CPU, SDPA builds (B, 1, L, L) masks). A reward model has
no logits to hold.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

GIB = 2**30
SUPPORTED = ("qwen2_5_vl", "qwen2_vl", "qwen2")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PRECISION = {"fp32": (4, 4, 4), "bf16": (4, 2, 4), "bf16-pure": (2, 2, 2)}  # weight, compute, residual bytes
TERMS = ("weights", "gradients", "optimizer", "working", "ddp_buckets", "activations", "overhead")


@dataclass(frozen=True)
class Text:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool


@dataclass(frozen=True)
class Vision:
    kind: str  # qwen2_5_vl: RMSNorm, gated MLP | qwen2_vl: LayerNorm, fc1/fc2 MLP
    depth: int
    dim: int
    intermediate: int
    heads: int
    patch: int
    temporal: int
    merge: int
    out: int
    channels: int


@dataclass(frozen=True)
class Arch:
    model_type: str
    text: Text
    vision: Vision | None


def read_arch(path: str | Path) -> Arch:
    """A checkpoint directory (its config.json) or a config.json path -> the dimensions the planner needs."""
    from basereward.types import DataError

    p = Path(path)
    cfg_path = p / "config.json" if p.is_dir() else p
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path}: no such config.json or checkpoint directory")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{cfg_path}: not a JSON config ({e})") from e
    model_type = cfg.get("model_type") if isinstance(cfg, dict) else None
    if model_type not in SUPPORTED:
        known = ", ".join(SUPPORTED)
        raise DataError(f"{cfg_path}: model_type {model_type!r} is not supported (known: {known})")

    def need(d: dict, key: str, where: str = "") -> int:
        if key not in d:
            raise DataError(f"{cfg_path}: {where}{key} is missing")
        return int(d[key])

    # transformers 5 writes the text dimensions under text_config; 4.x hub configs keep them at the top level
    t = {**cfg, **(cfg.get("text_config") or {})}
    heads, hidden = need(t, "num_attention_heads"), need(t, "hidden_size")
    text = Text(
        hidden=hidden,
        intermediate=need(t, "intermediate_size"),
        layers=need(t, "num_hidden_layers"),
        heads=heads,
        kv_heads=int(t.get("num_key_value_heads") or heads),
        head_dim=int(t.get("head_dim") or hidden // heads),
        vocab=need(t, "vocab_size"),
        tied=bool(cfg.get("tie_word_embeddings", t.get("tie_word_embeddings", False))),
    )
    if model_type == "qwen2":
        return Arch(model_type, text, None)
    v = cfg.get("vision_config") or {}
    vn = lambda key: need(v, key, "vision_config.")  # noqa: E731
    if model_type == "qwen2_5_vl":
        dim, inter, out = vn("hidden_size"), vn("intermediate_size"), vn("out_hidden_size")
    else:  # Qwen2-VL: embed_dim is the tower's width, hidden_size the merger's output (the LM's width)
        dim, out = vn("embed_dim"), vn("hidden_size")
        inter = int(dim * v.get("mlp_ratio", 4))
    vision = Vision(
        kind=model_type,
        depth=vn("depth"),
        dim=dim,
        intermediate=inter,
        heads=vn("num_heads"),
        patch=int(v.get("patch_size", 14)),
        temporal=int(v.get("temporal_patch_size", 2)),
        merge=int(v.get("spatial_merge_size", 2)),
        out=out,
        channels=int(v.get("in_channels", v.get("in_chans", 3))),
    )
    return Arch(model_type, text, vision)


def head_params(hidden: int, layers: int = 2, width: int | None = None) -> int:
    """RewardHead: Linear layers hidden -> width ... -> 1, biases on all but the output layer."""
    dims = [hidden] + [width or hidden] * (layers - 1) + [1]
    return sum(dims[k] * dims[k + 1] + (dims[k + 1] if k < layers - 1 else 0) for k in range(layers))


def param_counts(arch: Arch, head_layers: int = 2) -> dict[str, int]:
    """Parameters by part. `layer` / `block` are one decoder layer / vision block, `layers` / `blocks` all."""
    t = arch.text
    h, q, kv, i = t.hidden, t.heads * t.head_dim, t.kv_heads * t.head_dim, t.intermediate
    # q, k, v with bias; o and the MLP without; two RMSNorm weights
    layer = (h * q + q) + 2 * (h * kv + kv) + q * h + 3 * h * i + 2 * h
    n = {
        "embed": t.vocab * h,
        "layer": layer,
        "layers": t.layers * layer,
        "norm": h,
        "head": head_params(h, head_layers),
        "lm_head_dropped": 0 if t.tied else t.vocab * h,
    }
    v = arch.vision
    if v is not None:
        d, vi, wide = v.dim, v.intermediate, v.dim * v.merge**2
        attn = (d * 3 * d + 3 * d) + (d * d + d)  # fused qkv and proj, both with bias
        if v.kind == "qwen2_5_vl":  # gated MLP with biases, RMSNorms (weight only)
            block, ln = attn + 2 * (d * vi + vi) + (vi * d + d) + 2 * d, d
        else:  # fc1/fc2 with biases, LayerNorms (weight + bias)
            block, ln = attn + (d * vi + vi) + (vi * d + d) + 4 * d, 2 * d
        n.update(
            patch_embed=v.channels * v.temporal * v.patch**2 * d,
            block=block,
            blocks=v.depth * block,
            merger=ln + wide * wide + wide + wide * v.out + v.out,
        )
    return n


def lora_params(t: Text, rank: int) -> int:
    """rank * (in + out) for each targeted linear of every decoder layer."""
    h, q, kv, i = t.hidden, t.heads * t.head_dim, t.kv_heads * t.head_dim, t.intermediate
    return t.layers * rank * ((h + q) + 2 * (h + kv) + (q + h) + 2 * (h + i) + (i + h))


def layer_act_bytes(
    hidden,
    attn,
    inter,
    heads,
    c,
    res,
    mixed,
    *,
    gated=True,
    rms=True,
    casts=(3, 2),
    lora=0,
    trained_norms=True,
) -> int:
    """Bytes autograd saves per token in one decoder layer or vision block (see the module docstring). attn:
    elements of q/k/v/output tensors kept; c: compute bytes; res: bytes of the normalised input a norm keeps;
    mixed: autocast, which casts a norm's fp32 output once per linear reading it (casts: per norm)."""

    def norm(consumers: int) -> int:
        stats = 4 if rms else 8  # 1/rms; LayerNorm: mean and 1/std
        # the normalised input, for the weight's gradient (native layer_norm rebuilds it from x, mean, 1/std)
        normed = res * hidden if trained_norms and rms else 0
        return 4 * hidden + stats + normed + c * hidden * (consumers if mixed else 1)

    mlp = (4 if gated else 3) * c * inter
    return norm(casts[0]) + c * attn + 4 * heads + norm(casts[1]) + mlp + len(LORA_TARGETS) * lora * c


def activation_bytes(
    arch: Arch,
    precision: str,
    rows: int,
    length: int,
    image_tokens: int,
    *,
    checkpointing: bool,
    train_vision: bool,
    train_merger: bool,
    lora: int = 0,
    lora_dropout: bool = False,
) -> dict:
    """Activation bytes of one micro-batch: {"text", "vision", "recompute", "backward"}. With checkpointing,
    text and vision keep each layer's / block's input and `recompute` is the largest single layer's full set
    (backward recomputes one layer at a time, text layers first: the towers' sets are never alive at once)."""
    t, (_, c, res) = arch.text, PRECISION[precision]
    mixed, tokens = precision == "bf16", rows * length
    q, kv = t.heads * t.head_dim, t.kv_heads * t.head_dim
    # q (rotated), k and v twice each, the attention output and o_proj's input
    per_layer = layer_act_bytes(
        t.hidden, 3 * q + 4 * kv, t.intermediate, t.heads, c, res, mixed, lora=lora, trained_norms=lora == 0
    )
    adapter_in = 5 * t.hidden + q + t.intermediate  # inputs of the 7 adapters of a layer
    if lora and lora_dropout:  # each adapter keeps its dropout mask and its own dropped input (measured)
        per_layer += adapter_in * (1 + c)
    # outside the layers: the final norm (fp32 input, 1/rms, normalised) and the rotary cos/sin of every token
    outside = 4 * t.hidden + 4 + res * t.hidden + 2 * 4 * t.head_dim
    kept = res * t.hidden if checkpointing else per_layer
    # backward's first temporaries on top of everything saved; with checkpointing they fit in the recomputed
    # layer's set, which backward frees as it goes (measured)
    backward = 0 if checkpointing else tokens * (4 * t.hidden + c * t.intermediate)
    # LoRA under autocast: peft casts o_proj's and down_proj's bf16 inputs to the fp32 adapters' dtype before
    # autocast casts them back, a transient of the layer being computed (measured)
    transient = tokens * 4 * (q + t.intermediate) if mixed and lora else 0
    if lora and lora_dropout and precision != "bf16-pure":  # peft's fp32 dropout, then the casts (measured)
        transient += tokens * adapter_in * 2
    # LoRA freezes the embeddings: without checkpointing the first layer's input needs no gradient, and its first
    # norm keeps neither x nor 1/rms (under checkpointing each layer keeps just its input either way)
    first = 4 * t.hidden + 4 if lora and not checkpointing else 0
    out = {
        "text": tokens * (t.layers * kept + outside - first),
        "vision": 0,
        "recompute": tokens * per_layer + transient if checkpointing else 0,
        "backward": 0 if checkpointing else backward + transient,
    }
    v = arch.vision
    tower_grad = v is not None and train_vision
    if v is None or not (tower_grad or train_merger):
        return out
    res = 4 if precision == "fp32" else 2  # the tower's residual stream: the patch embedding's output dtype
    patches = rows * image_tokens * v.merge**2
    # merger, per patch: ln_q (RMSNorm: x and 1/rms when x needs a gradient, the normalised x for the weight;
    # LayerNorm: x, mean, 1/std), then the inputs of fc1, GELU and fc2
    if v.kind == "qwen2_5_vl":
        vis = (4 * v.dim + 4 if tower_grad else 0) + res * v.dim + 3 * c * v.dim
    else:
        vis = 4 * v.dim + 8 + 3 * c * v.dim
    if tower_grad:
        q25 = v.kind == "qwen2_5_vl"
        # attention keeps the fused qkv output whole (v is a view of it), rotated q and k, out, proj's input
        per_block = layer_act_bytes(
            v.dim,
            7 * v.dim,
            v.intermediate,
            v.heads,
            c,
            res,
            mixed,
            gated=q25,
            rms=q25,
            casts=(1, 2 if q25 else 1),
        )
        vis += 2 * 4 * v.dim // v.heads  # rotary cos/sin
        vis += c * v.channels * v.temporal * v.patch**2 if train_vision else 0  # patch embedding's input
        vis += v.depth * (res * v.dim if checkpointing else per_block)
        if checkpointing:
            out["recompute"] = max(out["recompute"], patches * per_block)
    out["vision"] = patches * vis
    return out


def plan(
    arch: Arch,
    *,
    gpus: int = 1,
    strategy: str = "ddp",
    precision: str = "bf16",
    lora: int = 0,
    lora_dropout: float = 0.0,
    micro_batch: int = 2,
    max_length: int = 4096,
    image_tokens: int = 640,
    checkpointing: bool = False,
    freeze_vision: bool = True,
    freeze_aligner: bool = False,
    cpu_offload: bool = False,
    head_layers: int = 2,
    gpu_memory_gb: float = 80.0,
    overhead_gb: float = 2.0,
) -> dict:
    """Every memory term per GPU (GiB; exact bytes under "bytes"), the parameter counts, whether it fits."""
    n, v = param_counts(arch, head_layers), arch.vision
    lm, merger = n["embed"] + n["layers"] + n["norm"], n.get("merger", 0)
    tower = n.get("patch_embed", 0) + n.get("blocks", 0)
    adapters = lora_params(arch.text, lora) if lora else 0
    trained = (0 if lora else lm) + (0 if freeze_vision else tower) + (0 if freeze_aligner else merger)
    trained += adapters
    backbone, head = lm + tower + merger + adapters, n["head"]
    w, c, _ = PRECISION[precision]
    shards = gpus if strategy == "fsdp" else 1
    # the head is fp32 in every precision: 4 B weight, 4 B gradient, 8 B AdamW state
    terms = {
        "weights": (backbone * w + 4 * head) / shards,
        "gradients": (trained * w + 4 * head) / shards,
        "optimizer": (trained * 2 * w + 8 * head) / shards,
    }
    cpu = sum(terms.values()) if cpu_offload else 0.0
    if cpu_offload:
        terms = dict.fromkeys(terms, 0.0)
    lora_unit = adapters // arch.text.layers
    trained_unit = max(lora_unit if lora else n["layer"], 0 if freeze_vision else n.get("block", 0))
    if strategy == "fsdp":
        unit = max(n["layer"] + lora_unit, n.get("block", 0))
        root = n["embed"] + n["norm"] + n.get("patch_embed", 0) + merger
        grad = c + (4 if precision == "bf16" else 0)
        # the head is a unit of its own, gathered in fp32 (basereward/sharding.py)
        terms["working"] = c * (2 * unit + root) + 4 * head + grad * trained_unit
    elif precision == "bf16":
        # not cast: the embedding (a lookup), norm weights; not kept: the patch embedding (reshaped first)
        outside = 0 if freeze_aligner else merger
        inside = n["layers"] + adapters + (0 if freeze_vision else n.get("blocks", 0))
        unit = max(n["layer"] + lora_unit, 0 if freeze_vision else n.get("block", 0))
        terms["working"] = 2 * (outside + (unit if checkpointing else inside))
    else:
        terms["working"] = 0
    terms["ddp_buckets"] = terms["gradients"] if strategy == "ddp" and gpus > 1 else 0
    # fsdp gathers bf16 parameters under bf16 (MixedPrecisionPolicy): the forward is that of bf16-pure
    act_precision = "bf16-pure" if strategy == "fsdp" and precision == "bf16" else precision
    acts = activation_bytes(
        arch,
        act_precision,
        micro_batch,
        max_length,
        image_tokens if v else 0,
        checkpointing=checkpointing,
        train_vision=not freeze_vision,
        train_merger=not freeze_aligner,
        lora=lora,
        lora_dropout=lora_dropout > 0,
    )
    terms["activations"] = sum(acts.values())
    terms["overhead"] = overhead_gb * GIB
    total = sum(terms.values())
    params = {
        "language_model": lm,
        "embeddings": n["embed"],
        "vision_tower": tower,
        "merger": merger,
        "head": head,
        "lora_adapters": adapters,
        "lm_head_dropped": n["lm_head_dropped"],
        "total": backbone + head,
        "trained": trained + head,
    }
    return {
        "fits": total <= gpu_memory_gb * GIB,
        "per_gpu_gb": round(total / GIB, 2),
        "gpu_memory_gb": gpu_memory_gb,
        "headroom_gb": round(gpu_memory_gb - total / GIB, 2),
        "params_b": round((backbone + head) / 1e9, 4),
        "trainable_params_b": round((trained + head) / 1e9, 4),
        **{f"{k}_gb": round(terms[k] / GIB, 3) for k in TERMS},
        "activations_detail_gb": {k: round(b / GIB, 3) for k, b in acts.items()},
        "cpu_offload_gb": round(cpu / GIB, 3),
        "params": params,
        "bytes": {k: int(terms[k]) for k in TERMS},
        "activation_bytes": acts,
    }


def add_args(p) -> None:
    a = p.add_argument
    a("--backbone", required=True, help="checkpoint directory or config.json (no weights needed)")
    a("--gpus", type=int, default=1, help="GPUs in the run (fsdp shards over all of them)")
    a("--gpu-memory", type=float, default=80.0, help="memory of one GPU in GiB (default 80)")
    a("--strategy", choices=["ddp", "fsdp"], default="ddp", help="ddp: replicated; fsdp: sharded")
    a(
        "--precision",
        choices=list(PRECISION),
        default="bf16",
        help="fp32 | bf16 (autocast, fp32 master weights) | bf16-pure (bf16 weights); default: bf16",
    )
    a("--lora", type=int, default=0, metavar="R", help="LoRA rank on q,k,v,o,gate,up,down (0: full)")
    a("--lora-dropout", type=float, default=0.0, help="LoRA dropout (> 0: a mask and a copy per adapter)")
    a("--micro-batch-size", type=int, default=2, help="pairs per forward = prefix-shared rows (default 2)")
    a("--max-length", type=int, default=4096, help="tokens per row [prompt | chosen | rejected] (4096)")
    a("--image-tokens", type=int, default=640, help="merged image tokens per row (recipe max_pixels -> 640)")
    a("--gradient-checkpointing", action="store_true", help="recompute each layer in backward")
    a(
        "--freeze-vision",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="freeze the vision tower's blocks and patch embedding (default on, as the recipe)",
    )
    a(
        "--freeze-aligner",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="freeze the vision-language merger (default off: it trains, as in the recipe)",
    )
    a("--cpu-offload", action="store_true", help="fsdp: sharded weights/gradients/optimizer in host memory")
    a("--head-layers", type=int, default=2, help="reward-head Linear layers (default 2)")
    a("--overhead-gb", type=float, default=2.0, help="fixed per-GPU overhead in GiB (default 2)")


def run(args) -> dict:
    from basereward.types import DataError

    for name in ("gpus", "micro_batch_size", "max_length"):
        if getattr(args, name) < 1:
            raise DataError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.lora, args.lora_dropout, args.image_tokens, args.overhead_gb) < 0 or args.gpu_memory <= 0:
        raise DataError("--lora, --lora-dropout, --image-tokens, --overhead-gb: >= 0; --gpu-memory: > 0")
    if not 1 <= args.head_layers <= 5:
        raise DataError(f"--head-layers must be 1-5, got {args.head_layers}")
    if args.cpu_offload and args.strategy != "fsdp":
        raise DataError("--cpu-offload needs --strategy fsdp")
    arch = read_arch(args.backbone)
    result = plan(
        arch,
        gpus=args.gpus,
        strategy=args.strategy,
        precision=args.precision,
        lora=args.lora,
        lora_dropout=args.lora_dropout,
        micro_batch=args.micro_batch_size,
        max_length=args.max_length,
        image_tokens=args.image_tokens,
        checkpointing=args.gradient_checkpointing,
        freeze_vision=args.freeze_vision,
        freeze_aligner=args.freeze_aligner,
        cpu_offload=args.cpu_offload,
        head_layers=args.head_layers,
        gpu_memory_gb=args.gpu_memory,
        overhead_gb=args.overhead_gb,
    )
    print(table(arch, args, result))
    return {"backbone": str(args.backbone), "model_type": arch.model_type, **result}


def table(arch: Arch, args, r: dict) -> str:
    """The human-readable plan: what is counted, the setup, one line per term."""
    n, b = r["params"], lambda x: f"{x / 1e9:.3f} B"
    vl = arch.vision is not None
    parts = [f"language model {b(n['language_model'])} (embeddings {b(n['embeddings'])})"]
    parts += [f"vision {b(n['vision_tower'] + n['merger'])}"] if vl else []
    parts += [f"head {n['head'] / 1e6:.1f} M"] + ([f"LoRA {b(n['lora_adapters'])}"] if args.lora else [])
    setup = [
        f"{args.gpus} GPU{'s' if args.gpus > 1 else ''} {args.strategy}"
        + (" + cpu offload" if args.cpu_offload else ""),
        args.precision,
        f"LoRA r={args.lora}" if args.lora else "full fine-tune",
        f"micro-batch {args.micro_batch_size} x {args.max_length} tokens"
        + (f", {args.image_tokens} image tokens" if vl else ""),
        f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}",
    ]
    if vl:
        setup.append(f"vision tower {'frozen' if args.freeze_vision else 'trained'}")
    lines = [
        f"{arch.model_type} from {args.backbone}: {b(n['total'])} parameters: " + ", ".join(parts),
        f"  trained {b(n['trained'])}; "
        + (
            f"not counted: the LM head ({b(n['lm_head_dropped'])})"
            if n["lm_head_dropped"]
            else "the LM head is tied (none to drop)"
        ),
        "setup: " + ", ".join(setup),
        "",
        f"{'term':<14}{'GiB per GPU':>12}",
    ]
    lines += [f"{k:<14}{r[k + '_gb']:>12.2f}" for k in TERMS]
    verdict = "fits" if r["fits"] else "does NOT fit"
    lines.append(f"{'total':<14}{r['per_gpu_gb']:>12.2f}   of {r['gpu_memory_gb']:g} GiB: {verdict}")
    if r["cpu_offload_gb"]:
        lines.append(f"host memory per GPU for the offloaded state: {r['cpu_offload_gb']:.2f} GiB")
    return "\n".join(lines)
