"""The peer row: TRL 1.16's RewardTrainer training the same reward model on the same pairs.

RewardTrainer has no VLM path (docs/environment.md §5.1), so it needs what any user would write:
- `wrapper_for(rm)`: a `PreTrainedModel` with the backbone's config (num_labels = 1) whose forward takes the collated tensors and returns
  `logits` (2B, 1), chosen rows first, as RewardTrainer's `chunk(2)` expects. Like AutoModelForSequenceClassification
  it applies the head to every position and picks the last non-pad token.
- `PairCollator`: builds one right-padded [chosen; rejected] batch with the images (here from pre-encoded pairs, the
  same ones the other variants use, so no variant pays for the image processor).
- the dataset has no `prompt`/`chosen`/`rejected` columns (TRL would rewrite them) and placeholder
  `chosen_ids`/`rejected_ids` so TRL skips its own tokenisation; `remove_unused_columns=False`; `bf16=False` (else
  CPU autocast); `gradient_checkpointing=False` (TRL's default is True, which would recompute activations and make
  the comparison unfair to TRL); `max_grad_norm` huge so clipping costs the same but never rescales the gradients
  that the gate compares; sequential sampling so step k sees the same pairs as every other variant.
Step time = the interval between consecutive `on_step_end` callbacks (data loading, collation, forward, backward,
clipping, optimizer, TRL's metrics).
"""

from __future__ import annotations

import tempfile
import time

import torch
from torch import nn


def wrapper_for(rm) -> nn.Module:
    """A `PreTrainedModel` around a basereward RewardModel (Trainer/TRL call its hub and tag helpers)."""
    from transformers import PreTrainedModel

    class TrlRewardWrapper(PreTrainedModel):
        config_class = type(rm.backbone.config)
        base_model_prefix = "rm"
        _supports_sdpa = True  # the wrapped backbone's attention is already set; this only passes the check
        forward = _wrapper_forward

        def __init__(self, config):
            super().__init__(config)
            self.rm = rm  # registered as a submodule: its weights are the ones trained
            self.first_logits: torch.Tensor | None = None

    import copy

    # TRL edits the config (pad/eos ids); the backbone keeps its own
    config = copy.deepcopy(rm.backbone.config)
    config.num_labels = 1
    return TrlRewardWrapper(config)


def _wrapper_forward(
    self,
    input_ids,
    attention_mask,
    mm_token_type_ids=None,
    pixel_values=None,
    image_grid_thw=None,
    use_cache=False,
    **_,
):
    from transformers.modeling_outputs import SequenceClassifierOutput

    out = self.rm.backbone(
        input_ids=input_ids,
        attention_mask=attention_mask,
        mm_token_type_ids=mm_token_type_ids,
        pixel_values=pixel_values,
        image_grid_thw=image_grid_thw,
        use_cache=False,
    )
    scores = self.rm.head(out.last_hidden_state)  # (2B, L): head on every position
    last = attention_mask.sum(-1) - 1  # right padding
    logits = scores[torch.arange(scores.shape[0]), last][:, None]
    if self.first_logits is None:
        self.first_logits = logits.detach().clone()
    return SequenceClassifierOutput(logits=logits)


class PairCollator:
    def __init__(self, pairs: list, pad_id: int):
        self.pairs, self.pad_id = pairs, pad_id

    def __call__(self, features: list[dict]) -> dict:
        from basereward.bench.data import split_pairs
        from basereward.collate import collate_padded

        chosen, rejected = split_pairs([self.pairs[f["pair_index"]] for f in features])
        b = collate_padded(chosen + rejected, self.pad_id)
        out = {"input_ids": b.input_ids, "attention_mask": b.attention_mask}
        for k in ("mm_token_type_ids", "pixel_values", "image_grid_thw"):
            if getattr(b, k) is not None:
                out[k] = getattr(b, k)
        return out


def run_trl(model, pad_id: int, batches: list[list], spec: dict) -> dict:
    """Train `model` (a basereward RewardModel) with RewardTrainer for warm-up + timed steps; per-step times."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RewardConfig, RewardTrainer

    from basereward.bench.runtime import save_gate

    n_steps = spec["warmup"] + spec["steps"]
    pairs = [
        p for s in range(n_steps) for p in batches[s % len(batches)]
    ]  # step k = the other variants' step k
    per_step = len(batches[0])
    ds = Dataset.from_dict(
        {
            "pair_index": list(range(len(pairs))),
            "chosen_ids": [[0]] * len(pairs),
            "rejected_ids": [[0]] * len(pairs),
        }
    )
    wrapper = wrapper_for(model)
    stamps: list[float] = []
    names = [n.removeprefix("rm.") for n, p in wrapper.named_parameters() if p.requires_grad]

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if not stamps:
                stamps.append(time.perf_counter())

        def on_pre_optimizer_step(self, args, state, control, **kw):
            if state.global_step == 0:
                params = [p for p in wrapper.parameters() if p.requires_grad]
                grads = {n: p.grad.detach().clone() for n, p in zip(names, params) if p.grad is not None}
                logits = wrapper.first_logits.flatten()
                loss = -torch.nn.functional.logsigmoid(logits[:per_step] - logits[per_step:]).mean()
                save_gate(spec, "TRL", logits, loss.item(), grads)

        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory(prefix="trl-bench-") as out_dir:
        args = RewardConfig(
            output_dir=out_dir,
            per_device_train_batch_size=per_step,
            max_steps=n_steps,
            learning_rate=1e-5,
            lr_scheduler_type="constant",
            weight_decay=0.0,
            max_grad_norm=1e9,
            bf16=False,
            use_cpu=True,
            gradient_checkpointing=False,
            remove_unused_columns=False,
            train_sampling_strategy="sequential",
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            dataloader_num_workers=0,
            optim="adamw_torch",
            seed=spec.get("seed", 0),
            logging_strategy="no",
        )
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(spec["model_dir"])
        trainer = RewardTrainer(
            model=wrapper,
            args=args,
            train_dataset=ds,
            processing_class=tok,
            data_collator=PairCollator(pairs, pad_id),
            callbacks=[Timer()],
        )
        trainer.train()
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"times": intervals[spec["warmup"] :], "trl_steps": len(intervals)}
