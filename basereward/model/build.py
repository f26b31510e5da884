"""The reward model a training config describes, before any training: the pretrained backbone with a new head
(naive), the pretrained LM with a new head (critic) or the LM alone (generative), its processor, LoRA adapters and
frozen parts as configured. `basereward train` starts from it, and `basereward
export` rebuilds it to read a step checkpoint's weights into (a step checkpoint stores only the trained weights).
"""

from __future__ import annotations

import torch

from basereward.config import TrainConfig
from basereward.model.backbone import vision_modules
from basereward.model.reward_model import RewardModel


def build_model(cfg: TrainConfig) -> tuple[torch.nn.Module, object]:
    """(model, processor). Every random draw is seeded by `cfg.seed`, so every rank builds the same model."""
    from basereward.model.processor import load_processor, set_pixel_bounds

    m = cfg.model
    if cfg.paradigm == "critic":
        from basereward.model.critic import CriticModel

        model = CriticModel.from_backbone(
            m.backbone,
            m.head,
            seed=cfg.seed,
            max_critique_tokens=cfg.critic.max_critique_tokens,
            attn_implementation=m.attn_implementation,
        )
    elif cfg.paradigm == "generative":
        from basereward.model.generative import GenerativeModel

        model = GenerativeModel.from_backbone(
            m.backbone, cfg.generative.format, order_seed=cfg.seed, attn_implementation=m.attn_implementation
        )
        model.think_tokens = (
            cfg.generative.think_tokens
        )  # inference only: training spells each think block out
    else:
        model = RewardModel.from_backbone(
            m.backbone, m.head, seed=cfg.seed, attn_implementation=m.attn_implementation
        )
    processor = load_processor(cfg.model.backbone, model.model_type)
    if cfg.model.max_pixels or cfg.model.min_pixels:
        set_pixel_bounds(processor, cfg.model.max_pixels, cfg.model.min_pixels)
    if cfg.lora.rank:
        from basereward.model.lora import apply_lora

        torch.manual_seed(cfg.seed)  # adapter init identical on every rank and to a one-process run
        apply_lora(model, cfg.lora)
    vision, aligner = vision_modules(model.backbone)
    if cfg.freeze_vision and vision is not None:
        for name, p in vision.named_parameters():
            p.requires_grad_(name.startswith("merger.") and not cfg.freeze_aligner)
    if cfg.freeze_aligner and aligner is not None:
        aligner.requires_grad_(False)
    return model, processor
