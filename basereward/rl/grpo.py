"""`basereward grpo`: GRPO with TRL's GRPOTrainer on a tiny Qwen2.5-VL policy, rewarded by a BaseReward model.

    basereward demo --out runs/demo                      # trains the reward model at runs/demo/train/final
    basereward grpo --config configs/grpo-demo.yaml [reward_model=DIR] [max_steps=30] [key=value ...]

The prompts are synthetic image questions with known answers (colour, shape, count, left/right; the same renderer
as the reward model's training data). The reward is the paper's hybrid: 1 if the completion matches the ground
truth (the answer sentence or the bare value), else sigmoid(BaseReward(prompt, image, completion)); the images
reach the reward model through `basereward.rl.trl`. Runs on CPU (bf16 off, no vLLM; docs/environment.md §5.2).

As in a real pipeline, RL starts from a supervised policy: `sft_steps` steps of supervised fine-tuning on other
synthetic questions (answer sentence after the same chat prompt TRL renders) come first. A random-init policy
writes byte noise, and on noise the reward model's score is a coin flip that no policy can climb.

Writes OUT/rewards.jsonl (one line per step) and ends with a JSON summary holding the mean reward per step.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class GrpoConfig:
    output_dir: str = "runs/grpo"  # policy/, rewards.jsonl and the trainer's files go here
    reward_model: str = "runs/demo/train/final"  # BaseReward checkpoint (`basereward demo` writes this one)
    reward_url: str | None = None  # score through a running `basereward serve` instead of in-process
    policy: str | None = None  # policy checkpoint dir; None: a fresh tiny Qwen2.5-VL in output_dir/policy
    policy_size: str = "test"  # init-tiny size of that fresh policy: test | demo
    seed: int = 0
    prompts: int = 256  # synthetic questions in the training set
    kinds: str = "colour,shape,count,position"  # question kinds, comma-separated
    matcher: str = "normalized"  # exact | normalized | choice: the rule half of the hybrid reward
    mode: str = "hybrid"  # hybrid | prob | raw | rule
    max_steps: int = 30  # optimizer steps
    learning_rate: float = 1e-4
    per_device_train_batch_size: int = 8  # completions per step (prompts x generations)
    num_generations: int = 4  # completions per prompt (the GRPO group)
    max_completion_length: int = 12  # new tokens per completion
    temperature: float = 1.0
    beta: float = 0.0  # KL coefficient; > 0 loads a reference copy of the policy from its directory
    sft_steps: int = 0  # supervised warm start before GRPO (0: none)
    sft_learning_rate: float = 1e-3
    sft_batch_size: int = 16
    device: str | None = None  # reward model device (default: cuda if available)

    def __post_init__(self):
        if self.sft_steps < 0 or self.sft_batch_size < 1 or self.sft_learning_rate <= 0:
            raise ValueError(
                f"sft_steps must be >= 0, sft_batch_size >= 1 and sft_learning_rate > 0; got "
                f"{self.sft_steps}, {self.sft_batch_size}, {self.sft_learning_rate}"
            )


def question_rows(n: int, seed: int, kinds: tuple[str, ...]) -> list[dict]:
    """Conversational image questions with their ground truth: [answer sentence, the bare value]."""
    from basereward.data.synthetic import make_image_pair

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        img, q, chosen, rejected = make_image_pair(kinds[i % len(kinds)], rng)
        # The value is the word where the right and wrong sentences differ ("red" in "The shape is red.").
        value = " ".join(
            a for a, b in zip(chosen.rstrip(".").split(), rejected.rstrip(".").split()) if a != b
        )
        # TRL puts the image part before the text; the leading newline makes the rendered prompt exactly the
        # reward model's training prompt ("<image>\n{question}").
        rows.append(
            {"prompt": [{"role": "user", "content": f"\n{q}"}], "image": img, "solution": [chosen, value]}
        )
    return rows


def main(cfg: GrpoConfig) -> dict:
    import torch
    from datasets import Dataset
    from transformers import Qwen2_5_VLForConditionalGeneration, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from basereward.model.processor import load_processor
    from basereward.rl.trl import make_reward_fn
    from basereward.tiny import init_tiny

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.reward_url is None and not (Path(cfg.reward_model) / "basereward.json").is_file():
        raise FileNotFoundError(
            f"{cfg.reward_model}: no BaseReward checkpoint; run `basereward demo --out runs/demo` "
            "or pass reward_model=DIR"
        )
    policy_dir = (
        Path(cfg.policy) if cfg.policy else init_tiny(out / "policy", "qwen2_5_vl", cfg.seed, cfg.policy_size)
    )
    # The model object is passed (not a path) with its processor: TRL's AutoProcessor would return only the
    # tokenizer here and training would fail on pixel_values (docs/environment.md §5.2).
    torch.manual_seed(cfg.seed)
    policy = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy_dir, dtype=torch.float32)
    processor = load_processor(policy_dir, "qwen2_5_vl")
    dataset = Dataset.from_list(question_rows(cfg.prompts, cfg.seed, tuple(cfg.kinds.split(","))))
    if cfg.sft_steps > 0:
        sft_rows = question_rows(
            cfg.sft_batch_size * cfg.sft_steps, cfg.seed + 1, tuple(cfg.kinds.split(","))
        )
        sft = warm_start(
            policy, processor, sft_rows, cfg.sft_steps, cfg.sft_batch_size, cfg.sft_learning_rate
        )
        print(
            f"sft warm start: {cfg.sft_steps} steps, loss {sft['first_loss']:.3f} -> {sft['last_loss']:.3f}",
            file=sys.stderr,
        )
        # TRL loads the KL reference (beta > 0) from the policy's directory: make that the warmed policy.
        policy.save_pretrained(out / "policy-sft")
        policy.config._name_or_path = str(out / "policy-sft")
    reward = make_reward_fn(
        cfg.reward_model if cfg.reward_url is None else None,
        cfg.reward_url,
        matcher=cfg.matcher,
        mode=cfg.mode,
        device=cfg.device,
    )

    steps: list[dict] = []
    log_path = out / "rewards.jsonl"

    class LogRewards(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "reward" in logs:
                rec = {
                    "step": state.global_step,
                    "reward": logs["reward"],
                    "reward_std": logs.get("reward_std"),
                    "match_rate": logs.get("basereward/match_rate"),
                }
                steps.append(rec)
                with log_path.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(f"step {rec['step']:>4}  mean reward {rec['reward']:.4f}", file=sys.stderr, flush=True)

    args = GRPOConfig(
        output_dir=str(out / "trainer"),
        use_cpu=not torch.cuda.is_available(),
        bf16=False,  # bf16 autocast on CPU is slower and leaves the model autocast-wrapped
        use_vllm=False,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        beta=cfg.beta,
        learning_rate=cfg.learning_rate,
        max_steps=cfg.max_steps,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=cfg.seed,
        disable_tqdm=True,
    )
    log_path.write_text("")
    trainer = GRPOTrainer(
        model=policy,
        reward_funcs=[reward],
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[LogRewards()],
    )
    t0 = time.time()
    trainer.train()
    rewards = [s["reward"] for s in steps]
    k = min(5, len(rewards))
    return {
        "steps": len(rewards),
        "mean_reward_per_step": [round(r, 4) for r in rewards],
        "first_steps_mean": sum(rewards[:k]) / k if k else None,
        "last_steps_mean": sum(rewards[-k:]) / k if k else None,
        "train_seconds": time.time() - t0,
        "match_rate_per_step": [s["match_rate"] for s in steps],
        "rewards_log": str(log_path),
        "config": asdict(cfg),
    }


def sft_example(processor, row: dict) -> dict:
    """Model inputs for one supervised example: the prompt rendered as TRL renders it for generation
    (`prepare_multimodal_messages` + the chat template's generation prompt), then the answer sentence and
    <|im_end|>; `labels` hold only those answer tokens (the prompt is -100)."""
    from trl.data_utils import prepare_multimodal_messages

    messages = prepare_multimodal_messages(row["prompt"], [row["image"]])
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(
        text=[prompt + row["solution"][0] + "<|im_end|>"], images=[row["image"]], return_tensors="pt"
    )
    n_prompt = len(processor(text=[prompt], images=[row["image"]])["input_ids"][0])
    inputs["labels"] = inputs["input_ids"].clone()
    inputs["labels"][:, :n_prompt] = -100
    return inputs


def warm_start(policy, processor, rows: list[dict], steps: int, batch: int, lr: float) -> dict:
    """Supervised fine-tuning on (image question -> answer sentence), `batch` rows per AdamW step."""
    import torch

    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    policy.train()
    losses = []
    for step in range(steps):
        opt.zero_grad()
        total = 0.0
        for row in rows[step * batch : (step + 1) * batch]:
            loss = policy(**sft_example(processor, row)).loss / batch
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        losses.append(total)
    policy.eval()
    k = min(10, len(losses))
    return {"first_loss": sum(losses[:k]) / k, "last_loss": sum(losses[-k:]) / k}


def add_args(p) -> None:
    p.add_argument("--config", default=None, help="YAML file (configs/grpo-demo.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. reward_model=DIR max_steps=30")


def run(args) -> dict:
    from basereward.config import load_config

    return main(load_config(args.config, args.overrides, cls=GrpoConfig))
