"""Train a reward model with the Bradley-Terry pairwise loss.

    basereward train --config configs/demo.yaml [key=value ...]

Reads top to bottom: set-up -> data -> model -> optimizer -> (resume) -> loop -> final model. One optimizer step
consumes `batch_size` pairs in `batch_size / micro_batch_size` forward/backward passes. The data order is a pure
function of (seed, step), which is what makes `resume=auto` continue bit-for-bit, and what a later multi-process run
shards by rank.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from basereward.checkpoint import (
    find_resume,
    load_trainer_state,
    prune_checkpoints,
    save_checkpoint,
    set_rng_state,
)
from basereward.collate import COLLATORS, Batch
from basereward.config import TrainConfig, load_config, to_dict
from basereward.losses import pair_loss
from basereward.model.backbone import vision_modules
from basereward.model.reward_model import RewardModel, load_reward_model
from basereward.scoring import pair_stats, score_pairs
from basereward.template import Encoder


class StepBatches(torch.utils.data.Dataset):
    """Item `step` = that optimizer step's micro-batches, encoded and collated. Epoch e visits the pairs in the order
    of `randperm(n, generator=seed + e)`; step s takes stream positions [s * batch_size, (s + 1) * batch_size)."""

    def __init__(self, pairs, encoder: Encoder, batch_size: int, micro_batch_size: int, seed: int,
                 max_length: int | None, num_steps: int, layout: str = "shared"):  # fmt: skip
        self.pairs, self.encoder, self.collate = pairs, encoder, COLLATORS[layout]
        self.batch_size, self.micro = batch_size, micro_batch_size
        self.seed, self.max_length, self.num_steps = seed, max_length, num_steps
        self._perms: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return self.num_steps

    def indices(self, step: int) -> list[int]:
        n, out = len(self.pairs), []
        for pos in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch = pos // n
            if epoch not in self._perms:
                self._perms = {
                    epoch: torch.randperm(
                        n, generator=torch.Generator().manual_seed(self.seed + epoch)
                    ).tolist()
                }
            out.append(self._perms[epoch][pos % n])
        return out

    def __getitem__(self, step: int) -> tuple[list[tuple[Batch, torch.Tensor]], int]:
        """([(micro-batch, pair margins)], number of pairs dropped for exceeding max_length)."""
        idx = self.indices(step)
        micro_batches, too_long = [], 0
        for start in range(0, len(idx), self.micro):
            encoded, margins = [], []
            for i in idx[start : start + self.micro]:
                pair = self.pairs[i]
                enc = self.encoder.encode(pair.as_sample())
                if (
                    self.max_length
                    and len(enc.prompt.input_ids) + max(map(len, enc.responses)) > self.max_length
                ):
                    too_long += 1
                    continue
                encoded.append(enc)
                margins.append(float(pair.margin or 0.0))
            if encoded:
                micro_batches.append((self.collate(encoded, self.encoder.pad_id), torch.tensor(margins)))
        return micro_batches, too_long


def lr_lambda(total: int, warmup: int, schedule: str, min_ratio: float):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress
        return min_ratio + (1 - min_ratio) * decay

    return f


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only; biases and norm weights are not decayed."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def evaluate(model, encoder: Encoder, pairs, cfg: TrainConfig, autocast_dtype) -> dict:
    model.eval()
    if cfg.max_eval_pairs:
        pairs = [pairs[i] for i in range(min(cfg.max_eval_pairs, len(pairs)))]
    chosen, rejected = score_pairs(
        model, encoder, pairs, max_rows=cfg.eval_batch_size, autocast_dtype=autocast_dtype
    )
    model.train()
    return pair_stats(chosen, rejected)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_pairs(path: str | None, on_error: str, drop_ties: bool, what: str):
    from basereward.data.io import LoadStats
    from basereward.data.store import open_pairs

    if not path:
        return [], None
    stats = LoadStats()
    pairs = open_pairs(path, on_error=on_error, stats=stats)
    if drop_ties:
        # shard folders filter by scanning one column and stay memory-mapped; JSONL is already in a list
        pairs = (
            pairs.drop_ties() if hasattr(pairs, "drop_ties") else [p for p in pairs if not p.meta.get("tie")]
        )
    if not len(pairs):
        raise ValueError(f"{what} data {path} has no usable pairs")
    return pairs, stats


def main(cfg: TrainConfig) -> dict:
    t_start = time.time()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)

    # --- data
    train_pairs, train_stats = load_pairs(cfg.data.train, cfg.data.on_error, cfg.data.drop_ties, "training")
    val_pairs, _ = load_pairs(cfg.data.validation, cfg.data.on_error, cfg.data.drop_ties, "validation")
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * len(train_pairs) / cfg.batch_size))

    # --- model (from a checkpoint when resuming, else a new head on the pretrained backbone)
    resume_dir = find_resume(out, cfg.resume)
    if resume_dir is not None:
        model, processor = load_reward_model(resume_dir, attn_implementation=cfg.model.attn_implementation)
        model.train()
    else:
        from basereward.model.processor import load_processor

        model = RewardModel.from_backbone(cfg.model.backbone, cfg.model.head, seed=cfg.seed,
                                          attn_implementation=cfg.model.attn_implementation)  # fmt: skip
        processor = load_processor(cfg.model.backbone, model.model_type)
    if cfg.model.max_pixels or cfg.model.min_pixels:
        from basereward.model.processor import set_pixel_bounds

        set_pixel_bounds(processor, cfg.model.max_pixels, cfg.model.min_pixels)
    encoder = Encoder(processor, model.model_type, model.pool_token)
    vision, aligner = vision_modules(model.backbone)
    if cfg.freeze_vision and vision is not None:
        for name, p in vision.named_parameters():
            p.requires_grad_(name.startswith("merger.") and not cfg.freeze_aligner)
    if cfg.freeze_aligner and aligner is not None:
        aligner.requires_grad_(False)
    if cfg.gradient_checkpointing:
        model.backbone.activation_checkpointing_enable({"use_reentrant": False})
    if cfg.precision == "bf16-pure":
        model.backbone.to(torch.bfloat16)
    model.to(device).train()
    autocast_dtype = torch.bfloat16 if cfg.precision == "bf16" else None

    # --- optimizer, schedule
    optimizer = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                  betas=(cfg.optim.beta1, cfg.optim.beta2), eps=cfg.optim.eps)  # fmt: skip
    warmup = (
        cfg.optim.warmup_steps
        if cfg.optim.warmup_steps is not None
        else int(cfg.optim.warmup_ratio * total_steps)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total_steps, max(1, warmup), cfg.optim.schedule, cfg.optim.min_lr_ratio)
    )
    start_step = 0
    if resume_dir is not None:
        state = load_trainer_state(resume_dir)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start_step = int(state["step"])
        print(f"resumed from {resume_dir} at step {start_step}", flush=True)

    # --- loop
    steps = StepBatches(train_pairs, encoder, cfg.batch_size, cfg.micro_batch_size, cfg.seed, cfg.data.max_length,
                        total_steps, cfg.layout)  # fmt: skip
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(steps, range(start_step, total_steps)), batch_size=None,
        num_workers=cfg.num_workers, persistent_workers=False,
    )  # fmt: skip
    logger = MetricsLogger(out, cfg.tensorboard)
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total_steps,
        initial=start_step,
        desc="train",
        unit="step",
        disable=not cfg.progress,
        mininterval=1.0,
    )
    skipped_too_long, window, step, last_eval = 0, [], start_step, {}
    t_loop = time.time()
    for step, (micro_batches, too_long) in enumerate(loader, start=start_step + 1):
        skipped_too_long += too_long
        optimizer.zero_grad(set_to_none=True)
        step_r_c, step_r_r, parts = [], [], {}
        for mb, margins in micro_batches:
            mb = mb.to(device)
            with torch.autocast(
                device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
            ):
                rewards = model(mb)
            r_c, r_r = rewards[0::2], rewards[1::2]
            margin = margins.to(device) if cfg.loss.use_margin else None
            lengths = mb.response_lengths if cfg.loss.length_norm else None
            loss, parts = pair_loss(r_c, r_r, margin=margin, center_coef=cfg.loss.center_coef,
                                    len_chosen=lengths[0::2] if lengths is not None else None,
                                    len_rejected=lengths[1::2] if lengths is not None else None)  # fmt: skip
            (loss * (len(r_c) / cfg.batch_size)).backward()
            step_r_c.append(r_c.detach().float().cpu())
            step_r_r.append(r_r.detach().float().cpu())
        grad_norm = float(
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip or float("inf"))
        )
        optimizer.step()
        scheduler.step()
        bar.update(1)
        if step_r_c:
            c, r = torch.cat(step_r_c), torch.cat(step_r_r)
            window.append(
                (float(pair_loss(c, r)[0]), float((c > r).float().mean()), float((c - r).mean()), len(c))
            )

        if step % cfg.log_every == 0 or step == total_steps:
            n = sum(w[3] for w in window) or 1
            rec = {"step": step, "loss": sum(w[0] * w[3] for w in window) / n,
                   "accuracy": sum(w[1] * w[3] for w in window) / n, "margin": sum(w[2] * w[3] for w in window) / n,
                   "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                   "pairs_per_s": n / max(1e-9, time.time() - t_loop), "skipped_too_long": skipped_too_long,
                   "elapsed_s": time.time() - t_start, **parts}  # fmt: skip
            logger.log("train", rec)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['accuracy']:.2f}")
            window, t_loop = [], time.time()
        if val_pairs and cfg.eval_every and step % cfg.eval_every == 0 and step != total_steps:
            last_eval = evaluate(model, encoder, val_pairs, cfg, autocast_dtype)
            logger.log("eval", {"step": step, **last_eval})
        if cfg.save_every and step % cfg.save_every == 0 and step != total_steps:
            save_checkpoint(out / "checkpoints" / f"step-{step:06d}", model=model, processor=processor,
                            optimizer=optimizer, scheduler=scheduler, step=step, info={"eval": last_eval})  # fmt: skip
            prune_checkpoints(out, cfg.keep_checkpoints)
    bar.close()
    train_seconds = time.time() - t_start

    # --- final evaluation, reward calibration on the validation split, final model
    if val_pairs:
        last_eval = evaluate(model, encoder, val_pairs, cfg, autocast_dtype)
        logger.log("eval", {"step": step, **last_eval})
        model.reward_stats = {"mean": last_eval["reward_mean"], "std": last_eval["reward_std"],
                              "n": 2 * last_eval["n"], "split": "validation"}  # fmt: skip
    final_dir = model.save(out / "final", processor)
    logger.close()
    return {
        "model_dir": str(final_dir),
        "steps": step,
        "train_pairs": len(train_pairs),
        "train_seconds": train_seconds,
        "skipped_records": train_stats.n_skipped if train_stats else 0,
        "skipped_too_long": skipped_too_long,
        "validation": last_eval,
    }


class MetricsLogger:
    """metrics.jsonl (one object per line, with a "split" key) and TensorBoard scalars."""

    def __init__(self, out: Path, tensorboard: bool):
        self.file = (out / "metrics.jsonl").open("a", encoding="utf-8")
        self.tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))

    def log(self, split: str, rec: dict) -> None:
        self.file.write(json.dumps({"split": split, **rec}) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in rec.items():
                if k != "step" and isinstance(v, int | float) and math.isfinite(v):
                    self.tb.add_scalar(f"{split}/{k}", v, rec["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def add_args(p) -> None:
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, dotted for sections: optim.lr=1e-5")


def run(args) -> dict:
    return main(load_config(args.config, args.overrides))
