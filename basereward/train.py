"""Train a reward model with the Bradley-Terry pairwise loss, on one process or many.

    basereward train --config configs/demo.yaml [key=value ...]
    basereward train --nproc 2 --config configs/demo.yaml ...                  (starts torchrun for you)
    torchrun --nproc_per_node 8 -m basereward train --config configs/basereward-qwen2.5-vl-7b.yaml

Reads top to bottom: `setup` (process group, data, model, sharding, optimizer, resume) -> `loop` (one `train_step`
per optimizer step, evaluation, checkpoints) -> `finish` (calibration, the final single-directory checkpoint). One
process is the same code at world size 1.

One optimizer step consumes `batch_size` pairs (the global batch = micro_batch_size x accumulation x world size).
The data order is a pure function of (seed, step): step s takes positions [s * batch_size, (s + 1) * batch_size)
of the seeded per-epoch permutations, and rank r takes its contiguous share of those. So the global sequence of
batches does not depend on the number of ranks, and `resume=auto` continues it exactly on any number of them.
The step's loss is the mean over the pairs actually used in the whole step (pairs dropped for length or bad
records are not counted), summed over micro-batches and ranks. A step whose loss (on any rank) or gradient norm is
NaN/Inf is skipped by every rank, or stops the run (`nonfinite`); non-finite weights are never saved.
`paradigm: critic` (the LM writes a critique, a head scores response + critique) and `paradigm: generative` (the LM
itself names the better response) train through the same loop: `PARADIGMS` names what each changes (its examples,
its loss, its scorer), basereward/critic_train.py and basereward/generative_train.py hold them.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from basereward import critic_train, distributed, generative_train
from basereward.checkpoint import (
    assert_finite,
    clean_partial,
    find_resume,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    seed_step,
    write_final,
)
from basereward.collate import Batch
from basereward.config import TrainConfig, load_config, to_dict
from basereward.faults import fault_point, poisoned
from basereward.generative_train import write_order
from basereward.metrics_log import MetricsLogger
from basereward.model.backbone import enable_activation_checkpointing
from basereward.model.build import build_model
from basereward.model.critic_scorer import CriticScorer
from basereward.model.generative_scorer import GenerativeScorer
from basereward.optim import lr_lambda, param_groups
from basereward.scoring import RewardScorer, pair_stats, score_pairs
from basereward.sharding import full_state_dict, inner, wrap
from basereward.step_batches import StepBatches, naive_filler, naive_sums
from basereward.template import Encoder
from basereward.types import DataError


@dataclass(frozen=True)
class Paradigm:
    """What a paradigm changes in the loop: its micro-batches (a StepBatches class and its extra arguments), the
    zero-weight micro-batch of a rank with an empty slot, the loss (`sums(model output, micro-batch, margins,
    cfg) -> (loss, row of the step sums, parts to log)`), and the scorer that validates it."""

    steps: type
    step_args: Callable[[Encoder, TrainConfig], dict]
    filler: Callable[[Encoder, TrainConfig], object]
    sums: Callable
    scorer: type


PARADIGMS = {
    "naive": Paradigm(StepBatches, lambda encoder, cfg: {}, naive_filler, naive_sums, RewardScorer),
    "critic": Paradigm(
        critic_train.CriticSteps,
        critic_train.critic_step_args,
        critic_train.filler,
        critic_train.critic_sums,
        CriticScorer,
    ),
    "generative": Paradigm(
        generative_train.JudgeSteps,
        generative_train.judge_step_args,
        generative_train.filler,
        lambda out, mb, margins, cfg: (*generative_train.judge_sums(out), {}),
        GenerativeScorer,
    ),
}


def load_pairs(path: str | None, on_error: str, drop_ties: bool, what: str, lazy: bool = False):
    """Training data is opened lazily (offsets only; the same sequence on any number of ranks); validation data is
    small and loaded whole."""
    from basereward.data.io import LoadStats
    from basereward.data.store import open_pairs

    if not path:
        return [], None
    stats = LoadStats()
    pairs = open_pairs(path, on_error=on_error, stats=stats, lazy=lazy)
    if drop_ties:
        # shard folders and indexed JSONL filter by a scan and stay on disk; a loaded JSONL is already a list
        pairs = (
            pairs.drop_ties() if hasattr(pairs, "drop_ties") else [p for p in pairs if not p.meta.get("tie")]
        )
    if not len(pairs):
        raise ValueError(f"{what} data {path} has no usable pairs")
    return pairs, stats


def evaluate(engine, encoder: Encoder, pairs, cfg: TrainConfig, autocast_dtype) -> dict:
    """Validation pairs dealt to the ranks in units of one forward (the same number on every rank, as sharded
    models need) and gathered on rank 0, as `basereward eval` does; the stats are returned on every rank. The
    pairs are scored in the layout the run trains in."""
    from basereward.eval.distributed_scoring import score_sharded

    runner = inner(engine)  # DDP: the plain module (no collectives); FSDP: the sharded root itself
    runner.eval()
    n = min(cfg.max_eval_pairs or len(pairs), len(pairs))
    scorer = PARADIGMS[cfg.paradigm].scorer(
        runner,
        encoder=encoder,
        batch_size=cfg.eval_batch_size,
        autocast_dtype=autocast_dtype,
        layout=cfg.layout,
    )
    rewards, _ = score_sharded(
        [pairs[i] for i in range(n)],
        lambda batch: score_pairs(scorer, batch),
        max(1, cfg.eval_batch_size // 2),
        "eval",
        progress=False,
    )
    runner.train()
    # a judge's order agreement and ties, a critic's generated tokens, summed over ranks (a collective: every rank
    # asks)
    judged = {}
    if cfg.paradigm == "generative":
        judged = scorer.judge_stats(across_ranks=True)
    elif cfg.paradigm == "critic":
        judged = {"critic": scorer.critic_stats(across_ranks=True)}
    stats = pair_stats([c for c, _ in rewards], [r for _, r in rewards]) if rewards is not None else None
    stats = {**stats, **judged} if stats is not None else None
    return distributed.broadcast_object(stats)


@dataclass
class Run:
    """Everything `setup` builds for the loop."""

    cfg: TrainConfig
    info: distributed.DistInfo
    out: Path
    model: torch.nn.Module  # RewardModel, CriticModel or GenerativeModel (sharded in place under FSDP)
    engine: torch.nn.Module  # what forward/backward run through: the model, or its DDP wrapper
    processor: object
    encoder: Encoder
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    steps: StepBatches
    val_pairs: object
    train_stats: object
    total_steps: int
    start_step: int
    autocast_dtype: torch.dtype | None
    filler: Batch | None  # a minimal pair run with zero weight when a rank's micro-batch slot is empty
    t_start: float
    nonfinite_skipped: int = 0  # steps skipped for a NaN/Inf loss or gradient norm (carried over by a resume)


def setup(cfg: TrainConfig) -> Run:
    t_start = time.time()
    info = distributed.init(cfg.device, cfg.distributed.backend, cfg.distributed.timeout_s)
    cfg.grad_accum(info.world_size)  # refuses a global batch that does not divide
    out = Path(cfg.output_dir)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    torch.manual_seed(cfg.seed)

    # --- data: every rank indexes the same sequence and later reads only its own share of each step
    # rank 0 indexes (and validates) the training file once; the others receive the index (byte offsets, or a shard
    # folder's row list), not the pairs
    loaded: tuple | Exception | None = None
    if info.is_main:
        try:
            loaded = load_pairs(cfg.data.train, cfg.data.on_error, cfg.data.drop_ties, "training", lazy=True)
        except (DataError, OSError, ValueError) as e:
            loaded = e
    loaded = distributed.broadcast_object(loaded if info.is_main else None)
    if isinstance(loaded, Exception):  # every rank stops with the same one-line error
        raise loaded if info.is_main else DataError(f"(rank {info.rank}) training data: {loaded}")
    train_pairs, train_stats = loaded
    val_pairs, _ = load_pairs(cfg.data.validation, cfg.data.on_error, cfg.data.drop_ties, "validation")
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * len(train_pairs) / cfg.batch_size))

    # --- model: a new head on the pretrained backbone (a resumed run loads its weights below), or the judge LM
    paradigm = PARADIGMS[cfg.paradigm]
    model, processor = build_model(cfg)
    if cfg.paradigm == "generative" and info.is_main:
        model.order = write_order(out, train_pairs, cfg.seed)
    if cfg.paradigm == "critic" and info.is_main and not critic_train.critique_share(train_pairs):
        print(
            f"warning: no pair among the first 1,000 of {cfg.data.train} has a chosen_critique or rejected_critique;"
            " the critic learns to score empty critiques and generates untrained ones (docs/datasets.md §1)",
            file=sys.stderr,
            flush=True,
        )
    encoder = Encoder(processor, model.model_type, model.pool_token)
    if cfg.gradient_checkpointing:
        enable_activation_checkpointing(model.backbone)
    if cfg.precision == "bf16-pure":
        model.backbone.to(torch.bfloat16)
    fsdp = info.enabled and cfg.distributed.strategy == "fsdp"
    if not (fsdp and info.device.type == "cuda"):  # fully_shard moves each unit to the GPU as it shards it
        model.to(info.device)
    model.train()
    engine = wrap(
        model,
        info,
        strategy=cfg.distributed.strategy,
        precision=cfg.precision,
        cpu_offload=cfg.distributed.cpu_offload,
        reshard_after_forward=cfg.distributed.reshard_after_forward,
    )
    # FSDP casts to bf16 itself (param_dtype); elsewhere bf16 is autocast over fp32 master weights
    autocast_dtype = torch.bfloat16 if cfg.precision == "bf16" and not fsdp else None

    # --- optimizer, schedule, resume
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.optim.weight_decay),
        lr=cfg.optim.lr,
        betas=(cfg.optim.beta1, cfg.optim.beta2),
        eps=cfg.optim.eps,
    )
    warmup = (
        cfg.optim.warmup_steps
        if cfg.optim.warmup_steps is not None
        else int(cfg.optim.warmup_ratio * total_steps)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total_steps, max(1, warmup), cfg.optim.schedule, cfg.optim.min_lr_ratio)
    )
    start_step, nonfinite_skipped = 0, 0
    if info.is_main:
        for name in clean_partial(out):  # a crash mid-write (or mid-delete) leaves these; never read
            print(f"removed the incomplete {out / name}", flush=True)
    resume_dir = distributed.broadcast_object(find_resume(out, cfg.resume) if info.is_main else None)
    if resume_dir is not None:
        state = load_checkpoint(resume_dir, model=model, optimizer=optimizer, scheduler=scheduler)
        start_step = int(state["step"])
        nonfinite_skipped = int(state.get("nonfinite_steps_skipped", 0))
        if info.is_main:
            print(
                f"resumed from {resume_dir} at step {start_step} (written by {state.get('world_size', 1)} "
                f"process(es), now {info.world_size})",
                flush=True,
            )

    steps = paradigm.steps(
        train_pairs,
        encoder,
        cfg.batch_size,
        cfg.micro_batch_size,
        cfg.seed,
        cfg.data.max_length,
        total_steps,
        cfg.layout,
        rank=info.rank,
        world_size=info.world_size,
        on_error=cfg.data.on_error,
        **paradigm.step_args(encoder, cfg),
    )
    filler = paradigm.filler(encoder, cfg) if info.enabled else None
    return Run(
        cfg,
        info,
        out,
        model,
        engine,
        processor,
        encoder,
        optimizer,
        scheduler,
        steps,
        val_pairs,
        train_stats,
        total_steps,
        start_step,
        autocast_dtype,
        filler,
        t_start,
        nonfinite_skipped,
    )


def train_step(run: Run, slots: list, drops: dict[str, int], step: int) -> dict:
    """One optimizer step over this rank's micro-batch slots. Each micro-batch's loss is weighted by its share of
    the pairs used in the whole step (summed over ranks), so the gradient is that of the mean over those pairs.
    Returns the step's sums over all ranks, the pairs every rank dropped, by reason, and `nonfinite`: a reason if
    the step was not applied because a loss (on any rank) or the gradient norm was NaN/Inf, else None."""
    cfg, info, engine = run.cfg, run.info, run.engine
    counts = torch.tensor(
        [sum(len(s[1]) for s in slots if s is not None), *drops.values()], dtype=torch.float64
    )
    if info.enabled:  # one collective for the step's pair count and the drop counts
        counts = counts.to(info.device)
        torch.distributed.all_reduce(counts)
        counts = counts.cpu()
    n_total = int(counts[0])
    run.optimizer.zero_grad(set_to_none=True)
    # loss * n, correct, margin * n, n, micro-batches with a non-finite loss, ranks with a non-finite gradient norm
    sums = torch.zeros(6, dtype=torch.float64)
    parts: dict = {}
    ddp = hasattr(engine, "no_sync")
    grad_norm = float("nan")  # stays so when every pair of this step was dropped on every rank: no update
    if n_total:
        for k, slot in enumerate(slots):
            accumulate_only = ddp and k < len(slots) - 1  # DDP reduces once, after the last micro-batch
            with engine.no_sync() if accumulate_only else contextlib.nullcontext():
                if slot is None:
                    if run.filler is not None:  # keep this rank's collectives in step with the others
                        (engine(run.filler.to(info.device)).sum() * 0.0).backward()
                    continue
                mb, margins = slot
                mb = mb.to(info.device)
                with torch.autocast(
                    info.device.type,
                    dtype=run.autocast_dtype or torch.float32,
                    enabled=run.autocast_dtype is not None,
                ):
                    rewards = engine(mb)
                fault_point("forward", step, info.rank)
                # the model's output: rewards (naive), [reward, critique cross-entropy] (critic) or [answer
                # cross-entropy, verdict margin] (generative) per response or judge call
                loss, row, parts = PARADIGMS[cfg.paradigm].sums(rewards, mb, margins, cfg)
                if poisoned(step, info.rank):
                    loss = loss * float("nan")
                # ranks' gradients are averaged by DDP/FSDP: x world size turns that average into the sum
                (loss * (row[3] * info.world_size / n_total)).backward()
                sums += torch.tensor(
                    [*row, float(not torch.isfinite(loss.detach()).item()), 0.0], dtype=torch.float64
                )
        grad_norm = torch.nn.utils.clip_grad_norm_(
            run.model.parameters(), cfg.optim.grad_clip or float("inf")
        )
        grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
        sums[5] = float(not math.isfinite(grad_norm))
    # reduced before the update, so that this one collective also carries the non-finite flags: every rank sees
    # the same counts and takes the same decision (one rank's NaN loss makes every rank skip)
    if info.enabled:
        sums_dev = sums.to(info.device)
        torch.distributed.all_reduce(sums_dev)
        sums = sums_dev.cpu()
    nonfinite = None
    if sums[4] or sums[5]:
        nonfinite = (
            f"non-finite loss in {int(sums[4])} micro-batch(es)"
            if sums[4]
            else f"non-finite gradient norm ({grad_norm})"
        )
        if cfg.nonfinite == "stop":
            raise DataError(
                f"step {step}: {nonfinite}; stopped before updating the weights (nonfinite=stop). resume=auto "
                "continues from the last checkpoint; nonfinite=skip skips such steps instead"
            )
        # no update: the weights, AdamW's moments and its step count stay as they were
        run.optimizer.zero_grad(set_to_none=True)
    elif n_total:
        run.optimizer.step()
        fault_point("optim", step, info.rank)
    # the schedule follows the step number whether or not this step updated, as the data order does
    run.scheduler.step()
    dropped = {k: int(v) for k, v in zip(drops, counts[1:].tolist())}
    return {
        "sums": sums[:4],
        "grad_norm": grad_norm,
        "parts": parts,
        "dropped": dropped,
        "nonfinite": nonfinite,
    }


def loop(run: Run) -> tuple[int, dict, dict]:
    cfg, info = run.cfg, run.info
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(run.steps, range(run.start_step, run.total_steps)),
        batch_size=None,
        num_workers=cfg.num_workers,
        persistent_workers=False,
    )
    logger = MetricsLogger(run.out, cfg.tensorboard) if info.is_main else None
    from tqdm.auto import tqdm

    bar = tqdm(
        total=run.total_steps,
        initial=run.start_step,
        desc="train",
        unit="step",
        disable=not (cfg.progress and info.is_main),
        mininterval=1.0,
    )
    dropped = {"too_long": 0, "bad_record": 0, "tie": 0}
    window, step, last_eval, t_loop = torch.zeros(4, dtype=torch.float64), run.start_step, {}, time.time()
    for step, (slots, drops) in enumerate(loader, start=run.start_step + 1):
        fault_point("step", step, info.rank)
        seed_step(cfg.seed, step, info.rank)
        res = train_step(run, slots, drops, step)
        for k, v in res["dropped"].items():
            dropped[k] += v
        if res["nonfinite"]:  # kept out of the window: one NaN would make its mean loss NaN
            run.nonfinite_skipped += 1
            if logger is not None:
                logger.log("nonfinite", {"step": step, "action": "skipped", "reason": res["nonfinite"]})
        else:
            window += res["sums"]
        bar.update(1)
        if (step % cfg.log_every == 0 or step == run.total_steps) and logger is not None:
            n = float(window[3]) or 1.0
            rec = {
                "step": step,
                "loss": float(window[0]) / n,
                "accuracy": float(window[1]) / n,
                "margin": float(window[2]) / n,
                "lr": run.scheduler.get_last_lr()[0],
                "grad_norm": res["grad_norm"],
                "pairs_per_s": float(window[3]) / max(1e-9, time.time() - t_loop),
                "skipped_too_long": dropped["too_long"],
                "skipped_bad_records": dropped["bad_record"],
                "nonfinite_steps_skipped": run.nonfinite_skipped,
                "elapsed_s": time.time() - run.t_start,
                **res["parts"],
            }
            logger.log("train", rec)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['accuracy']:.2f}")
        if step % cfg.log_every == 0 or step == run.total_steps:
            window, t_loop = torch.zeros(4, dtype=torch.float64), time.time()
        if run.val_pairs and cfg.eval_every and step % cfg.eval_every == 0 and step != run.total_steps:
            last_eval = evaluate(run.engine, run.encoder, run.val_pairs, cfg, run.autocast_dtype)
            if logger is not None:
                logger.log("eval", {"step": step, **last_eval})
        if cfg.save_every and step % cfg.save_every == 0 and step != run.total_steps:
            save_checkpoint(
                run.out / "checkpoints" / f"step-{step:06d}",
                model=run.model,
                optimizer=run.optimizer,
                scheduler=run.scheduler,
                step=step,
                info={
                    "eval": last_eval,
                    "pairs_seen": step * cfg.batch_size,
                    "seed": cfg.seed,
                    "strategy": cfg.distributed.strategy if info.enabled else "single",
                    "nonfinite_steps_skipped": run.nonfinite_skipped,
                },
            )
            prune_checkpoints(run.out, cfg.keep_checkpoints)
    bar.close()
    if logger is not None:
        logger.close()
    return step, last_eval, dropped


def finish(run: Run, step: int, last_eval: dict, dropped: dict) -> dict | None:
    """Final evaluation, reward calibration on the validation split, and the final model, written once as the
    usual single-directory checkpoint (gathered from the shards under FSDP)."""
    cfg, info = run.cfg, run.info
    train_seconds = time.time() - run.t_start
    if run.val_pairs:
        last_eval = evaluate(run.engine, run.encoder, run.val_pairs, cfg, run.autocast_dtype)
        if info.is_main:
            with MetricsLogger(run.out, False) as logger:
                logger.log("eval", {"step": step, **last_eval})
        run.model.reward_stats = {
            "mean": last_eval["reward_mean"],
            "std": last_eval["reward_std"],
            "n": 2 * last_eval["n"],
            "split": "validation",
        }
    assert_finite(run.model, f"the final model {run.out / 'final'}")  # every rank decides alike
    state = full_state_dict(run.model, info)  # collective under FSDP
    final_dir = run.out / "final"
    if info.is_main:
        kw = {"state_dict": state} if state is not None else {}
        write_final(final_dir, lambda d: run.model.save(d, run.processor, **kw), step)
    distributed.barrier()
    if not info.is_main:
        return None
    return {
        "model_dir": str(final_dir),
        "steps": step,
        "train_pairs": len(run.steps.pairs),
        "train_seconds": train_seconds,
        "world_size": info.world_size,
        "strategy": cfg.distributed.strategy if info.enabled else "single",
        "skipped_records": (run.train_stats.n_skipped if run.train_stats else 0) + dropped["bad_record"],
        "skipped_too_long": dropped["too_long"],
        "nonfinite_steps_skipped": run.nonfinite_skipped,
        "validation": last_eval,
        **({"judge_order": run.model.order} if cfg.paradigm == "generative" else {}),
    }


def main(cfg: TrainConfig) -> dict | None:
    """Train; the result dict on rank 0, None on the other ranks."""
    run = setup(cfg)
    step, last_eval, dropped = loop(run)
    return finish(run, step, last_eval, dropped)


def add_args(p) -> None:
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument(
        "--nproc",
        type=int,
        default=0,
        help="start this many processes on this machine with torchrun (one per GPU; gloo on CPU)",
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides, dotted for sections: optim.lr=1e-5")


def run(args) -> dict | None:
    try:  # a bad config is one error line (cli.py), before any process starts
        cfg = load_config(args.config, args.overrides)
        if args.nproc > 1 and not distributed.launched_by_torchrun():
            cfg.grad_accum(args.nproc)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"config: {e}") from e
    if args.nproc > 1 and not distributed.launched_by_torchrun():
        argv = (["--config", args.config] if args.config else []) + list(args.overrides)
        rc = distributed.launch(args.nproc, ["train", *argv])
        if rc:
            raise SystemExit(rc)
        return None  # rank 0 of the child job printed the result line
    return main(cfg)
