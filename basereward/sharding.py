"""Several processes, one model: DDP or FSDP2 wrapping of a RewardModel, and the full weights back on rank 0.

- `ddp`: every rank holds the whole model; gradients are averaged across ranks after backward.
- `fsdp`: PyTorch's FSDP2 `fully_shard` on each vision block and each language decoder layer (the units transformers
  declares as `_no_split_modules` for Qwen2.5-VL), on the reward head, then on the root. Parameters, gradients and
  AdamW state are sharded across ranks; a unit's full weights exist only while it runs. `precision: bf16` gathers
  weights in bf16 and reduces gradients in fp32; the head stays fp32 (its own unit, its own policy) because rewards
  feed a sigmoid. Optional CPU offload of the sharded state. Activation checkpointing (transformers' per-layer
  recompute) composes with it: the recompute gathers the layer again.

Mixed modality: a rank whose micro-batch has no image would skip the vision tower while another rank runs it; with
FSDP the tower's all-gathers then pair up with different collectives and the job hangs, and DDP waits for gradients
that never come. We run a blank 2x2-patch image (one merged token) through the tower on image-less forwards and add
`0 * mean(features)` to the token embeddings (`RewardModel.vision_keepalive`), at the point where an image forward
runs the tower, so that every rank issues the same collectives in the same order, forward and backward. The
addition is exactly zero, and unlike appending dummy image tokens to the sequence it leaves the scored last token
and the mRoPE positions as they are; the tower's weights get zero gradient from such a forward. Not covered: a
micro-batch with both images and videos runs the tower twice (transformers encodes them in two calls) while an
image-only one runs it once; under FSDP that would hang, so keep video pairs out of sharded training for now.
"""

from __future__ import annotations

import torch
from torch import nn

from basereward.distributed import DistInfo


def decoder_layers(backbone: nn.Module) -> list[nn.Module]:
    """The language model's decoder layers (VL backbones keep them under `language_model`)."""
    lm = getattr(backbone, "language_model", backbone)
    return list(lm.layers)


def vision_blocks(backbone: nn.Module) -> list[nn.Module]:
    visual = getattr(backbone, "visual", None)
    return list(visual.blocks) if visual is not None else []


def install_vision_keepalive(model: nn.Module) -> None:
    """Give a VL reward model the blank-image forward described in the module docstring (no-op for text models)."""
    visual = getattr(model.backbone, "visual", None)
    if visual is None:
        return
    vcfg = visual.config
    merge = vcfg.spatial_merge_size
    in_dim = vcfg.in_channels * vcfg.temporal_patch_size * vcfg.patch_size**2

    def keepalive() -> torch.Tensor:
        ref = next(visual.parameters())
        pixels = torch.zeros(merge * merge, in_dim, dtype=ref.dtype, device=ref.device)
        grid = torch.tensor([[1, merge, merge]], device=ref.device)
        out = visual(pixels, grid_thw=grid)
        # merged features (merger included)
        feats = out.pooler_output if hasattr(out, "pooler_output") else out
        return 0.0 * feats.float().mean()

    model.vision_keepalive = keepalive


def wrap(
    model: nn.Module,
    info: DistInfo,
    *,
    strategy: str,
    precision: str,
    cpu_offload: bool = False,
    reshard_after_forward: bool = True,
) -> nn.Module:
    """The module to run forward/backward through: `model` itself at world size 1 or under FSDP (sharded in place),
    a DDP wrapper under DDP. The optimizer and checkpoints always take `model`."""
    if not info.enabled:
        return model
    install_vision_keepalive(model)
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        # no buffer sync per forward: the only buffers are rotary frequencies, equal on every rank, and a sync per
        # forward would be one more collective that eval forwards (on the inner module) do not make
        return DistributedDataParallel(
            model,
            device_ids=[info.device] if info.device.type == "cuda" else None,
            forward_sync_buffers=False,
        )
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if precision == "bf16"
        else MixedPrecisionPolicy()
    )
    if cpu_offload and info.device.type != "cuda":  # FSDP offloads from an accelerator to the CPU
        cpu_offload = False
        if info.is_main:
            print(
                "distributed.cpu_offload: ignored on CPU (the sharded state is in CPU memory already)",
                flush=True,
            )
    kw = dict(
        offload_policy=CPUOffloadPolicy() if cpu_offload else OffloadPolicy(),
        reshard_after_forward=reshard_after_forward,
    )
    for unit in vision_blocks(model.backbone) + decoder_layers(model.backbone):
        fully_shard(unit, mp_policy=mp, **kw)
    fully_shard(model.head, mp_policy=MixedPrecisionPolicy(param_dtype=torch.float32), **kw)
    fully_shard(model, mp_policy=mp, **kw)
    return model


def inner(engine: nn.Module) -> nn.Module:
    """The RewardModel inside a DDP wrapper (or the model itself)."""
    return getattr(engine, "module", engine)


def full_state_dict(model: nn.Module, info: DistInfo) -> dict | None:
    """The whole model's weights as CPU tensors on rank 0 (None on the others); a collective under FSDP. At world
    size 1 or under DDP (replicated weights) it returns None: the caller saves from the module itself."""
    from torch.distributed.fsdp import FSDPModule

    if not info.enabled or not isinstance(model, FSDPModule):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return sd if info.is_main else None
