"""LoRA adapters (peft) on a reward model's language model; the head is trained in full, never wrapped.

    apply_lora(model, LoraArgs(rank=16))   inject adapters, freeze the language model's base weights
    merge_lora(model)                      fold them into the base weights: plain nn.Linear again, stock HF keys

Where adapters go: the linear layers named in `targets` *inside the language model only*. Qwen2.5-VL's vision
blocks have linear layers of the same names (`mlp.gate_proj/up_proj/down_proj`), so matching names over the whole
backbone would put adapters in the tower too. The adapters are injected into the language-model submodule itself
(`backbone.language_model`, or the whole backbone for a text LM), which makes the vision tower unreachable by
construction rather than by a regex that a renamed module path could slip past.

What trains: adapters and the head always; the vision tower keeps whatever `requires_grad` it had (the trainer's
`freeze_vision` / `freeze_aligner` decide, after this). The head stays a plain module of the RewardModel, not a
peft `modules_to_save` copy: that is how merged reward models lose their head or come back as 2-label classifiers
in other projects (OpenRLHF #872, ms-swift #6099, TRL #2957).

Checkpoints of a LoRA model (see `RewardModel.save`) hold the adapter tensors plus every other backbone tensor that
was trained in full (e.g. an unfrozen vision tower), the head, and the base model's path; never a copy of the base.
"""

from __future__ import annotations

from torch import nn

ADAPTER_NAME = "default"  # peft's adapter slot; one adapter per model
# peft's adapter tensors: <module>.lora_A.<name>.weight, <module>.lora_B.<name>.weight
LORA_KEY_MARK = ".lora_"


def language_model(backbone: nn.Module) -> nn.Module:
    """The decoder stack: `language_model` of a VL backbone, the backbone itself for a text LM."""
    lm = getattr(backbone, "language_model", None)
    return backbone if lm is None else lm


def language_model_prefix(backbone: nn.Module) -> str:
    """State-dict prefix of the language model inside the backbone ("language_model." or "")."""
    lm = language_model(backbone)
    if lm is backbone:
        return ""
    return next(name for name, mod in backbone.named_modules() if mod is lm) + "."


def target_names(targets: str | list[str]) -> list[str]:
    names = targets.split(",") if isinstance(targets, str) else list(targets)
    return [t.strip() for t in names if t.strip()]


def is_lora_key(key: str) -> bool:
    return LORA_KEY_MARK in key


def lora_settings(rank: int, alpha: float, dropout: float, targets) -> dict:
    """The record kept on the model (`model.lora`) and in the checkpoint's basereward.json."""
    return {
        "rank": int(rank),
        "alpha": float(alpha),
        "dropout": float(dropout),
        "targets": target_names(targets),
    }


def inject(model, settings: dict) -> int:
    """Put fresh adapters on the targeted linear layers of the language model; returns how many were targeted.

    Adapters start as peft initialises them (A random, B zero): the model's rewards are unchanged until trained."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    lm = language_model(model.backbone)
    config = LoraConfig(
        r=settings["rank"],
        lora_alpha=settings["alpha"],
        lora_dropout=settings["dropout"],
        target_modules=settings["targets"],
        bias="none",
    )
    try:
        inject_adapter_in_model(config, lm, adapter_name=ADAPTER_NAME)
    except ValueError as e:  # peft: "Target modules {...} not found in the base model"
        raise ValueError(f"lora.targets {','.join(settings['targets'])}: {e}") from None
    # Whatever peft marked, set the language model's trainability here explicitly: adapters only.
    for name, p in lm.named_parameters():
        p.requires_grad_(is_lora_key(name))
    model.lora = dict(settings)
    return sum(isinstance(m, LoraLayer) for m in lm.modules())


def apply_lora(model, args) -> dict:
    """Inject LoRA adapters of `args` (a `LoraArgs`) into `model` (a RewardModel) in place; returns a summary.

    Freezes the language model's base weights and embeddings, leaves the vision tower's `requires_grad` as it was
    and keeps the head trainable. Call before wrapping for DDP/FSDP, and before freezing the vision tower."""
    if getattr(model, "lora", None):
        raise ValueError("this model already has LoRA adapters (resume loads them with merge_lora=False)")
    if args.rank <= 0:
        raise ValueError(f"apply_lora needs lora.rank > 0, got {args.rank}")
    n_targeted = inject(model, lora_settings(args.rank, args.alpha, args.dropout, args.targets))
    model.head.requires_grad_(True)
    params = list(model.named_parameters())
    return {
        **model.lora,
        "targeted_modules": n_targeted,
        "adapter_params": sum(p.numel() for n, p in params if is_lora_key(n)),
        "trainable_params": sum(p.numel() for _, p in params if p.requires_grad),
        "total_params": sum(p.numel() for _, p in params),
    }


def merge_lora(model):
    """Fold the adapters into the base weights (W += alpha/r * B @ A) and put the plain nn.Linear back, so the
    backbone's state-dict keys are the stock Hugging Face keys again. In place; returns `model`."""
    from peft.tuners.lora import LoraLayer

    if not getattr(model, "lora", None):
        return model
    lm = language_model(model.backbone)
    for name, module in list(lm.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge(safe_merge=True)  # refuses adapters that would put NaN/inf into the weights
            parent_name, _, attr = name.rpartition(".")
            setattr(lm.get_submodule(parent_name) if parent_name else lm, attr, module.get_base_layer())
    if hasattr(lm, "peft_config"):
        del lm.peft_config
    model.merged_lora, model.lora = model.lora, None
    return model
