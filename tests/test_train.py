"""The trainer: it learns, it freezes what it should, it resumes bit-for-bit, and it feeds the same ids as `score`."""

import json
import shutil
import statistics

import pytest
import torch
from safetensors.torch import load_file

from basereward.config import DataArgs, ModelArgs, OptimArgs, TrainConfig
from basereward.data.synthetic import synthesize
from basereward.train import main as train_main


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("colour")
    synthesize(d, pairs=320, eval_pairs=80, seed=5, text_share=0.0, kinds=("colour",))
    return d


def config(out, backbone, data, **kw):
    base = dict(
        output_dir=str(out),
        seed=0,
        model=ModelArgs(backbone=str(backbone)),
        data=DataArgs(train=str(data / "train.jsonl"), validation=str(data / "validation.jsonl")),
        optim=OptimArgs(lr=2e-3, warmup_steps=5, weight_decay=0.0),
        batch_size=16,
        micro_batch_size=8,
        max_steps=4,
        eval_every=0,
        log_every=1,
        progress=False,
        tensorboard=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def final_weights(run_dir):
    w = load_file(str(run_dir / "final" / "model.safetensors"))
    w.update({"head." + k: v for k, v in load_file(str(run_dir / "final" / "head.safetensors")).items()})
    return w


def test_training_raises_validation_accuracy(tmp_path, colour_data):
    from basereward.tiny import init_tiny

    backbone = init_tiny(tmp_path / "tiny", size="demo", seed=0)
    res = train_main(
        config(
            tmp_path / "run",
            backbone,
            colour_data,
            max_steps=60,
            max_eval_pairs=None,
            optim=OptimArgs(lr=1e-3, warmup_steps=10, weight_decay=0.05),
        )
    )
    before = train_main(
        config(
            tmp_path / "run0", backbone, colour_data, max_steps=1, optim=OptimArgs(lr=1e-9, warmup_steps=1)
        )
    )
    assert before["validation"]["accuracy"] < 0.7
    assert res["validation"]["accuracy"] >= 0.85, res["validation"]
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["split"] == "train"]
    assert len(losses) == 60
    # Bradley-Terry starts near ln 2 (rewards of an untrained head barely differ) and goes down
    assert statistics.fmean(losses[-10:]) < statistics.fmean(losses[:10]) - 0.1, losses

    # The reported validation numbers are those of the saved model: re-score every validation pair with the
    # final checkpoint, one pair per forward in the padded layout (the trainer scores shared-prefix batches).
    from basereward.data.io import read_pairs
    from basereward.model.reward_model import load_reward_model
    from basereward.scoring import RewardScorer

    model, processor = load_reward_model(res["model_dir"])
    val = read_pairs(colour_data / "validation.jsonl")
    rewards = RewardScorer(model, processor, batch_size=2, layout="padded")([p.as_sample() for p in val])
    assert res["validation"]["n"] == len(val) == len(rewards)
    right = sum(c > r for c, r in rewards)
    near_ties = sum(abs(c - r) < 1e-5 for c, r in rewards)
    assert abs(res["validation"]["accuracy"] - right / len(val)) <= near_ties / len(val)
    every = [x for pair in rewards for x in pair]
    assert res["validation"]["reward_mean"] == pytest.approx(statistics.fmean(every), abs=1e-5)
    assert res["validation"]["reward_std"] == pytest.approx(statistics.pstdev(every), abs=1e-5)
    assert model.reward_stats["mean"] == res["validation"]["reward_mean"]
    assert model.reward_stats["std"] == res["validation"]["reward_std"]


def test_one_step_changes_every_trainable_parameter_and_no_frozen_one(tmp_path, tiny_dirs, colour_data):
    from basereward.model.reward_model import RewardModel

    init = RewardModel.from_backbone(tiny_dirs["qwen2_5_vl"], seed=0)
    before = {
        **{k: v.clone() for k, v in init.backbone.state_dict().items()},
        **{"head." + k: v.clone() for k, v in init.head.state_dict().items()},
    }
    train_main(
        config(
            tmp_path / "run",
            tiny_dirs["qwen2_5_vl"],
            colour_data,
            max_steps=1,
            freeze_vision=True,
            freeze_aligner=False,
        )
    )
    after = final_weights(tmp_path / "run")
    assert set(after) == set(before)
    frozen = [k for k in before if k.startswith("visual.") and not k.startswith("visual.merger.")]
    trainable = [k for k in before if k not in frozen]
    assert frozen and trainable
    for k in frozen:
        assert torch.equal(before[k], after[k]), f"frozen {k} changed"
    # rows of never-seen tokens get zero gradient; Adam moves a tensor if any element had one
    unchanged = [k for k in trainable if torch.equal(before[k], after[k])]
    assert not unchanged, f"trainable parameters that did not change: {unchanged}"


def test_resume_is_bit_for_bit(tmp_path, tiny_dirs, colour_data):
    kw = dict(max_steps=4, save_every=2, keep_checkpoints=5)
    full = tmp_path / "full"
    train_main(config(full, tiny_dirs["qwen2_5_vl"], colour_data, **kw))
    assert (full / "checkpoints" / "step-000002").is_dir()
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step-000002", resumed / "checkpoints" / "step-000002")
    res = train_main(config(resumed, tiny_dirs["qwen2_5_vl"], colour_data, resume="auto", **kw))
    assert res["steps"] == 4
    a, b = final_weights(full), final_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and the control: resuming without the optimizer/schedule state would not match
    fresh = tmp_path / "fresh"
    train_main(config(fresh, tiny_dirs["qwen2_5_vl"], colour_data, max_steps=2))
    assert not all(torch.equal(a[k], final_weights(fresh)[k]) for k in a)


def test_training_and_score_feed_identical_token_ids(tmp_path, tiny_dirs, colour_data):
    """Template parity: the trainer's micro-batch rows equal what the scoring path builds for the same pairs."""
    from basereward.collate import COLLATORS
    from basereward.data.io import read_pairs
    from basereward.model.processor import load_processor
    from basereward.model.reward_model import RewardModel
    from basereward.scoring import RewardScorer
    from basereward.step_batches import StepBatches
    from basereward.template import Encoder

    pairs = read_pairs(colour_data / "train.jsonl")
    proc = load_processor(tiny_dirs["qwen2_5_vl"], "qwen2_5_vl")
    steps = StepBatches(pairs, Encoder(proc, "qwen2_5_vl"), 4, 4, seed=0, max_length=None, num_steps=1)
    ((batch, _),) = steps[0][0]
    idx = steps.indices(0)
    scorer = RewardScorer(RewardModel.from_backbone(tiny_dirs["qwen2_5_vl"]), proc)
    ref = COLLATORS[scorer.layout]([scorer.encode(pairs[i].as_sample()) for i in idx], scorer.encoder.pad_id)
    assert torch.equal(batch.input_ids, ref.input_ids)
    assert torch.equal(batch.mm_token_type_ids, ref.mm_token_type_ids)
    assert torch.equal(batch.pixel_values, ref.pixel_values)


def test_bf16_checkpointing_workers_padded_and_tensorboard_run(tmp_path, tiny_dirs, colour_data):
    """The optional paths run end to end: bf16 autocast, gradient checkpointing, a DataLoader worker, the padded
    layout, frozen aligner, TensorBoard scalars."""
    res = train_main(
        config(
            tmp_path / "run",
            tiny_dirs["qwen2_5_vl"],
            colour_data,
            max_steps=2,
            precision="bf16",
            gradient_checkpointing=True,
            num_workers=1,
            layout="padded",
            freeze_aligner=True,
            tensorboard=True,
            eval_every=1,
            max_eval_pairs=8,
        )
    )
    assert res["steps"] == 2 and res["validation"]["n"] == 8
    assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    evals = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e["split"] == "eval"]
    assert [e["step"] for e in evals] == [1, 2]
    assert evals[-1]["accuracy"] == res["validation"]["accuracy"]  # the result reports the last evaluation
    assert evals[0]["margin"] != evals[1]["margin"]  # the second step changed the model
    # the result's statistics are those of the saved model: the checkpoint carries them for calibration
    meta = json.loads((tmp_path / "run" / "final" / "basereward.json").read_text())
    assert (
        meta["reward_stats"]["mean"] == res["validation"]["reward_mean"] and meta["reward_stats"]["n"] == 16
    )
