"""Tiny, randomly initialised checkpoints of the real architectures, built offline.

`basereward init-tiny DIR --arch qwen2_5_vl|qwen2_vl|qwen2` writes a Hugging Face directory in one of two layouts:

- `--layout save_pretrained` (the default): what transformers 5's `save_pretrained` writes, i.e. what basereward's
  own checkpoints hold: one model.safetensors, a config.json with nested `text_config` and `rope_parameters`,
  tokenizer.json + tokenizer_config.json (class TokenizersBackend), chat_template.jinja, processor_config.json.
  This is *not* the file set of a Hub download.
- `--layout hub`: the file set of the real Qwen2.5-VL / Qwen2-VL / Qwen2 Hub repositories, as users download them:
  sharded `model-0000K-of-0000N.safetensors` with `model.safetensors.index.json`, tensors under the Hub's names
  (`model.embed_tokens...`, `model.layers...`, `visual.blocks...`, `lm_head.weight`), the flat transformers 4.x
  config.json (`torch_dtype`, `rope_theta` and `rope_scaling` with `mrope_section` at top level), vocab.json +
  merges.txt + tokenizer.json + tokenizer_config.json read as `Qwen2Tokenizer` (Qwen's pre-tokenizer regex, which
  splits numbers into single digits), preprocessor_config.json (`min_pixels`/`max_pixels`) and chat_template.json.
  The weights are those of the default layout for the same seed and size, so both load to the same backbone. (The
  tensor names are the same in both layouts: transformers 5 holds the parts under `model.language_model` /
  `model.visual` but maps them back to these names when it saves; the layouts differ in everything else.)

The tokenizer is a byte-level BPE trained in-process on a small synthetic corpus; the special tokens take ids 0-6 in
the order Qwen uses. Sizes: `--size test` (hidden 64, vision 64, the fastest) and `--size demo` (the calibrated
config that learns image-grounded questions on 2 cores: text 64 x 2 layers, vision 128 x 2 full-attention blocks,
init std 0.08, rope theta 30, mrope section [2, 2, 4]; see docs/environment.md §9 "Tiny models that learn").
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# A simplified Qwen2-VL chat template: default system turn, `{"type": "image"}` parts become
# <|vision_start|><|image_pad|><|vision_end|> (the processor expands the pad to one token per merged patch).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_TEST = dict(
    hidden=64,
    layers=2,
    heads=4,
    kv=2,
    ffn=128,
    v_hidden=64,
    v_depth=2,
    v_heads=4,
    v_ffn=128,
    init_std=0.02,
    rope_theta=10000.0,
    mrope=[2, 3, 3],
    v_fullatt=[1],
)
# text hidden/layers/heads/kv/ffn, vision hidden/depth/heads/ffn, init std, rope theta, mrope section; the other
# sizes name only what differs from "test"
SIZES = {
    "test": _TEST,
    # a wider vision tower, larger init and a short rope period: learns the synthetic tasks in minutes
    "demo": {
        **_TEST,
        "v_hidden": 128,
        "v_ffn": 256,
        "init_std": 0.08,
        "rope_theta": 30.0,
        "mrope": [2, 2, 4],
        "v_fullatt": [0, 1],
    },
    # benchmark shapes (docs/performance.md §5): 7B-like ratios (FFN ~5.3x, LM head ~8.7% of the backbone)
    "bench": {
        **_TEST,
        "hidden": 256,
        "layers": 4,
        "ffn": 1344,
        "v_hidden": 96,
        "v_ffn": 256,
        "mrope": [8, 12, 12],
        "v_window": 112,
        "vocab": 1664,
    },
}


def _corpus() -> list[str]:
    """Text the BPE is trained on: chat scaffolding, the synthetic data's vocabulary, digits and common words."""
    words = (
        "What colour is the shape ? The shape is red blue green yellow purple orange white black . "
        "What shape is shown ? It is a circle square triangle star . How many shapes are there ? There are "
        "one two three four five 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 + - = "
        "Is the on left or right side of the image ? answer question user assistant system You are a helpful "
        "assistant Answer the with a single word number . , ! ? : ; ' \" ( ) the a an of in to and is are was"
    )
    lines = [words] * 4
    lines += [f"What is {a} + {b}? {a} + {b} = {a + b}." for a in range(10) for b in range(10)]
    lines += ["<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"]
    return lines


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:2] + SPECIAL_TOKENS[3:],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_image_processor(max_pixels: int = 112 * 112, min_pixels: int = 56 * 56):
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
    )


def build_model(arch: str, tokenizer, size: str = "test", seed: int = 0):
    """A randomly initialised model of `arch` (the full generation model, LM head included, like a real release)."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
    )

    s = SIZES[size]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(
        vocab_size=max(len(tokenizer), s.get("vocab", 0)),  # "vocab" pads the embedding beyond the BPE's ids
        hidden_size=s["hidden"],
        intermediate_size=s["ffn"],
        num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"],
        num_key_value_heads=s["kv"],
        max_position_embeddings=4096,
        initializer_range=s["init_std"],
        bos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    if arch == "qwen2":
        cfg = Qwen2Config(**text, rope_parameters={"rope_type": "default", "rope_theta": s["rope_theta"]})
        cfg._attn_implementation = "sdpa"
        return Qwen2ForCausalLM(cfg)
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": s["rope_theta"],
        "mrope_section": s["mrope"],
    }
    vision = dict(
        depth=s["v_depth"],
        hidden_size=s["v_hidden"],
        embed_dim=s["v_hidden"],
        intermediate_size=s["v_ffn"],
        num_heads=s["v_heads"],
        patch_size=14,
        temporal_patch_size=2,
        spatial_merge_size=2,
        initializer_range=s["init_std"],
    )
    tokens = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    if arch == "qwen2_5_vl":
        window = s.get("v_window", 56)
        vision.update(out_hidden_size=s["hidden"], window_size=window, fullatt_block_indexes=s["v_fullatt"])
        cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **tokens)
        model_cls = Qwen2_5_VLForConditionalGeneration
    elif arch == "qwen2_vl":
        vision.update(mlp_ratio=s["v_ffn"] // s["v_hidden"])
        cfg = Qwen2VLConfig(text_config=text, vision_config=vision, **tokens)
        model_cls = Qwen2VLForConditionalGeneration
    else:
        raise ValueError(f"unknown arch {arch!r}; choose qwen2_5_vl, qwen2_vl or qwen2")
    cfg.initializer_range = s["init_std"]
    cfg._attn_implementation = "sdpa"
    return model_cls(cfg)


LAYOUTS = ("save_pretrained", "hub")


def init_tiny(
    out_dir: str | Path,
    arch: str = "qwen2_5_vl",
    seed: int = 0,
    size: str = "test",
    layout: str = "save_pretrained",
) -> Path:
    """Write a tiny checkpoint directory in `layout` (module docstring). Returns the directory."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    model = build_model(arch, tok, size=size, seed=seed)
    if layout == "hub":
        write_hub_layout(model, tok, arch, out)
        (out / "tiny.json").write_text(
            json.dumps({"arch": arch, "seed": seed, "size": size, "layout": layout}) + "\n"
        )
        return out
    model.save_pretrained(out)
    tok.save_pretrained(out)
    if arch != "qwen2":
        from basereward.model.processor import image_only_processor_class, save_processor

        proc_cls = image_only_processor_class(arch)
        save_processor(
            proc_cls(image_processor=build_image_processor(), tokenizer=tok, chat_template=CHAT_TEMPLATE), out
        )
    (out / "tiny.json").write_text(json.dumps({"arch": arch, "seed": seed, "size": size}) + "\n")
    return out


# transformers 5 holds a VL model's parts under these module paths; Hub files name them the 4.x way
_HUB_PREFIXES = (("model.language_model.", "model."), ("model.visual.", "visual."))
HUB_SHARDS = 2


def hub_state_dict(model) -> dict:
    """The model's tensors under the names of the Hub files (a text LM's names are the same in both versions)."""
    out = {}
    for key, value in model.state_dict().items():
        for new, old in _HUB_PREFIXES:
            if key.startswith(new):
                key = old + key[len(new) :]
                break
        out[key] = value.detach().contiguous().cpu()
    return out


def write_hub_shards(tensors: dict, out: Path, shards: int = HUB_SHARDS) -> None:
    """`model-0000K-of-0000N.safetensors` in state-dict order, split by size, plus the index that maps each tensor
    to its shard (what `save_pretrained(max_shard_size=...)` wrote for the real releases)."""
    from safetensors.torch import save_file

    sizes = {k: v.numel() * v.element_size() for k, v in tensors.items()}
    total = sum(sizes.values())
    groups: list[dict] = [{} for _ in range(shards)]
    done = 0
    for k, v in tensors.items():
        # the shard whose share of the bytes this tensor starts in; every shard gets at least one tensor
        groups[min(shards - 1, done * shards // total)][k] = v
        done += sizes[k]
    weight_map = {}
    for i, group in enumerate(groups, 1):
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        save_file(group, str(out / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in group})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def hub_config(model, arch: str) -> dict:
    """The flat transformers 4.x config.json of the Hub releases, for this model's config values."""
    cfg = model.config
    text = (cfg.text_config if arch != "qwen2" else cfg).to_dict()
    rope = text.pop("rope_parameters")
    for k in (
        "model_type",
        "layer_types",
        "dtype",
        "transformers_version",
        "architectures",
        "output_attentions",
    ):
        text.pop(k, None)
    flat = {
        "architectures": [type(model).__name__],
        "model_type": arch,
        **{k: v for k, v in text.items() if not k.startswith("_")},
        "rope_theta": rope["rope_theta"],
        "torch_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "transformers_version": "4.49.0",
    }
    if arch == "qwen2":
        flat["rope_scaling"] = None
        return flat
    flat["rope_scaling"] = {"type": "mrope", "mrope_section": list(rope["mrope_section"])}
    for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        flat[k] = getattr(cfg, k)
    vision = cfg.vision_config.to_dict()
    for k in ("model_type", "rope_parameters", "dtype", "transformers_version", "output_attentions"):
        vision.pop(k, None)
    vision = {k: v for k, v in vision.items() if not k.startswith("_")}
    vision["in_chans"] = vision.pop("in_channels", 3)  # the 4.x names
    vision["spatial_patch_size"] = vision["patch_size"]
    flat["vision_config"] = vision
    return flat


def write_hub_tokenizer(tok, arch: str, out: Path) -> None:
    """vocab.json + merges.txt + tokenizer.json + tokenizer_config.json, read back as Qwen2Tokenizer."""
    from transformers import Qwen2Tokenizer

    model = json.loads(tok.backend_tokenizer.to_str())["model"]
    merges = [m.split(" ") if isinstance(m, str) else list(m) for m in model["merges"]]
    qwen = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=[tuple(m) for m in merges],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:2] + SPECIAL_TOKENS[3:],
    )
    qwen.chat_template = CHAT_TEMPLATE
    qwen.save_pretrained(out)
    (out / "chat_template.jinja").unlink(missing_ok=True)  # the Hub files keep it in the JSON files below
    (out / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False) + "\n")
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges))
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("backend", None)
    cfg.update(
        tokenizer_class="Qwen2Tokenizer",
        chat_template=CHAT_TEMPLATE,
        model_max_length=32768,
        errors="replace",
        add_prefix_space=False,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        bos_token=None,
        unk_token=None,
    )
    if arch != "qwen2":
        cfg["processor_class"] = {"qwen2_5_vl": "Qwen2_5_VLProcessor", "qwen2_vl": "Qwen2VLProcessor"}[arch]
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def write_hub_layout(model, tok, arch: str, out: Path) -> None:
    write_hub_shards(hub_state_dict(model), out)
    (out / "config.json").write_text(json.dumps(hub_config(model, arch), indent=2) + "\n")
    text = getattr(model.config, "text_config", model.config)
    gen = {"bos_token_id": text.bos_token_id, "eos_token_id": text.eos_token_id}
    gen.update(pad_token_id=tok.pad_token_id, transformers_version="4.49.0")
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    write_hub_tokenizer(tok, arch, out)
    if arch == "qwen2":
        return
    ip = build_image_processor()
    pre = {
        "min_pixels": ip.size["shortest_edge"],
        "max_pixels": ip.size["longest_edge"],
        "patch_size": ip.patch_size,
        "temporal_patch_size": ip.temporal_patch_size,
        "merge_size": ip.merge_size,
        "image_mean": list(ip.image_mean),
        "image_std": list(ip.image_std),
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": {"qwen2_5_vl": "Qwen2_5_VLProcessor", "qwen2_vl": "Qwen2VLProcessor"}[arch],
    }
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
    (out / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2) + "\n")


def add_args(p) -> None:
    p.add_argument("dir", help="output directory")
    p.add_argument("--arch", default="qwen2_5_vl", choices=["qwen2_5_vl", "qwen2_vl", "qwen2"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--layout",
        default="save_pretrained",
        choices=LAYOUTS,
        help="save_pretrained (transformers 5 files, as basereward writes) or hub (the files of a Hub download)",
    )
    p.add_argument(
        "--size", default="test", choices=sorted(SIZES), help="test (fastest) or demo (learns fast)"
    )


def run(args) -> dict:
    import torch

    out = init_tiny(args.dir, arch=args.arch, seed=args.seed, size=args.size, layout=args.layout)
    from basereward.model.backbone import load_backbone

    n_params = sum(p.numel() for p in load_backbone(out, dtype=torch.float32).parameters())
    return {
        "model_dir": str(out),
        "arch": args.arch,
        "size": args.size,
        "seed": args.seed,
        "layout": args.layout,
        "backbone_params": n_params,
    }
