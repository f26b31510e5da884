"""TRL's GRPOTrainer with `basereward.rl.trl.reward_fn` on a tiny Qwen2.5-VL policy: the images reach the reward
model. Also the shipped GRPO config and the `basereward grpo` entry point."""

from pathlib import Path

import numpy as np
import pytest
from serve_fixtures import make_reward_model

from basereward.config import load_config
from basereward.rl import trl as trl_adapter
from basereward.rl.grpo import GrpoConfig, main, question_rows
from basereward.scoring import load_scorer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    return make_reward_model(tmp_path_factory.mktemp("grpo"))


def test_grpo_demo_config_loads():
    cfg = load_config(ROOT / "configs" / "grpo-demo.yaml", cls=GrpoConfig)
    assert cfg.reward_model == "runs/demo/train/final" and cfg.max_steps >= 30 and cfg.mode == "hybrid"
    assert (
        load_config(ROOT / "configs" / "grpo-demo.yaml", ["reward_model=/x"], cls=GrpoConfig).reward_model
        == "/x"
    )


def test_question_rows_carry_ground_truth():
    rows = question_rows(8, seed=0, kinds=("colour", "count"))
    assert rows[0]["image"].size == (112, 112)
    sentence, value = rows[0]["solution"]
    assert value in sentence and len(value.split()) == 1


def test_trl_grpo_two_steps_images_reach_the_reward_model(rm_dir, tmp_path):
    import torch
    from datasets import Dataset
    from transformers import Qwen2_5_VLForConditionalGeneration
    from trl import GRPOConfig, GRPOTrainer

    from basereward.model.processor import load_processor
    from basereward.tiny import init_tiny

    scorer = load_scorer(rm_dir, device="cpu", progress=False)
    seen = []  # what the reward model's forward received

    def spy(_module, args):
        batch = args[0]
        seen.append((batch.num_rewards, batch.pixel_values, batch.image_grid_thw))

    hook = scorer.model.register_forward_pre_hook(spy)
    encoded_images = []
    encode = scorer.encode
    scorer.encode = lambda s: (encoded_images.extend(ref.load() for ref in s.images), encode(s))[1]
    trl_adapter.configure(scorer=scorer)
    rows = question_rows(4, seed=0, kinds=("colour", "position"))
    policy_dir = init_tiny(tmp_path / "policy", "qwen2_5_vl", seed=0)
    policy = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy_dir, dtype=torch.float32)
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        use_vllm=False,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=6,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=policy,
        reward_funcs=[trl_adapter.reward_fn],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=load_processor(policy_dir, "qwen2_5_vl"),
    )
    try:
        trainer.train()
    finally:
        hook.remove()
        trl_adapter._default = None
    assert trainer.state.global_step == 2
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    assert len(rewards) == 2 and all(0.0 < r <= 1.0 for r in rewards)
    # every reward-model forward carried pixels: one image (16 merged tokens = 64 patches) per completion
    assert seen and all(pv is not None for _, pv, _ in seen)
    # one image per completion (padded layout) or per prompt shared by its 2 completions (prefix-shared layout)
    assert all(len(g) in (n, n // 2) for n, _, g in seen)
    for _, pv, grid in seen:
        assert pv.shape[0] == int(grid.prod(-1).sum())
    # and they are the dataset's images, pixel for pixel
    dataset_pixels = [np.asarray(r["image"]) for r in rows]
    assert encoded_images and all(
        any(np.array_equal(np.asarray(im), d) for d in dataset_pixels) for im in encoded_images
    )


def test_grpo_entry_point_runs(rm_dir, tmp_path):
    cfg = GrpoConfig(
        output_dir=str(tmp_path / "run"),
        reward_model=str(rm_dir),
        prompts=4,
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=4,
    )
    out = main(cfg)
    assert out["steps"] == 1 and len(out["mean_reward_per_step"]) == 1
    assert (tmp_path / "run" / "rewards.jsonl").read_text().count("\n") == 1
    with pytest.raises(FileNotFoundError, match="basereward demo"):
        main(GrpoConfig(output_dir=str(tmp_path / "x"), reward_model=str(tmp_path / "missing")))


def test_sft_warm_start_learns_the_answer_tokens_only(tmp_path):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from basereward.model.processor import load_processor
    from basereward.rl.grpo import sft_example, warm_start
    from basereward.tiny import init_tiny

    policy_dir = init_tiny(tmp_path / "policy", "qwen2_5_vl", seed=0)
    processor = load_processor(policy_dir, "qwen2_5_vl")
    rows = question_rows(2, seed=0, kinds=("colour",))
    ex = sft_example(processor, rows[0])
    answer = ex["labels"][0][ex["labels"][0] != -100]
    assert processor.tokenizer.decode(answer) == rows[0]["solution"][0] + "<|im_end|>"
    assert ex["pixel_values"] is not None and int(ex["image_grid_thw"].prod()) == ex["pixel_values"].shape[0]
    torch.manual_seed(0)
    policy = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy_dir, dtype=torch.float32)
    out = warm_start(policy, processor, rows * 20, steps=20, batch=2, lr=3e-3)
    assert out["last_loss"] < 0.5 * out["first_loss"]


def test_bad_warm_start_settings_name_the_field():
    with pytest.raises(ValueError, match="sft_batch_size >= 1"):
        load_config(ROOT / "configs" / "grpo-demo.yaml", ["sft_batch_size=0"], cls=GrpoConfig)
