"""The callers of the one scoring path keep its settings: training-time validation scores in the run's layout
through the module inside a wrapper, and the encoder (with its prompt cache) still travels to DataLoader workers."""

import dataclasses
import pickle

import pytest
import torch

from basereward.collate import collate_padded
from basereward.config import TrainConfig
from basereward.model.processor import load_processor
from basereward.model.reward_model import RewardModel
from basereward.scoring import RewardScorer, pair_stats
from basereward.template import Encoder
from basereward.types import PreferencePair, Sample


@pytest.fixture(scope="module")
def model_and_encoder(tiny_dirs):
    model = RewardModel.from_backbone(tiny_dirs["qwen2"], seed=5)
    with torch.no_grad():  # spread rewards so accuracy and margins are not degenerate
        for p in model.head.parameters():
            p.normal_(0, 0.5)
    return model, Encoder(load_processor(tiny_dirs["qwen2"], "qwen2"), "qwen2")


def text_pairs(n: int) -> list[PreferencePair]:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    return [
        PreferencePair(
            f"p{i}",
            [{"role": "user", "content": f"Say {words[i % 8]} {i}."}],
            f"{words[i % 8]} {i}",
            f"{words[(i + 3) % 8]} and more {i}",
        )
        for i in range(n)
    ]


class Wrapper(torch.nn.Module):
    """Stands in for DDP: the engine training runs, with the reward model as `.module`."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, batch):  # validation must not come through here (a DDP forward is a collective)
        raise AssertionError("evaluate ran the wrapper, not the module inside it")


@pytest.mark.parametrize("layout", ["shared", "padded"])
def test_training_validation_scores_in_the_run_layout(model_and_encoder, layout):
    from basereward.train import evaluate

    model, enc = model_and_encoder
    pairs = text_pairs(7)
    cfg = dataclasses.replace(TrainConfig(), layout=layout, eval_batch_size=4, max_eval_pairs=5)
    seen: list = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        model.train()
        stats = evaluate(Wrapper(model), enc, pairs, cfg, None)
    finally:
        hook.remove()
    assert model.training  # put back in training mode
    # 5 pairs in units of eval_batch_size // 2 = 2 pairs: forwards of 2, 2, 1 pairs
    rows_per_pair = 2 if layout == "padded" else 1
    assert [b.input_ids.shape[0] for b in seen] == [2 * rows_per_pair, 2 * rows_per_pair, rows_per_pair]
    assert all((b.position_shift is None) == (layout == "padded") for b in seen)

    def alone(pair, text):
        with torch.no_grad():
            return float(model(collate_padded([enc.encode(Sample(pair.prompt, [text]))], enc.pad_id))[0])

    model.eval()
    expected = pair_stats([alone(p, p.chosen) for p in pairs[:5]], [alone(p, p.rejected) for p in pairs[:5]])
    assert stats["n"] == expected["n"] == 5 and stats["accuracy"] == expected["accuracy"]
    for key in ("margin", "reward_mean", "reward_std"):
        assert stats[key] == pytest.approx(expected[key], abs=1e-5)


def test_encoder_with_prompt_cache_pickles_for_dataloader_workers(model_and_encoder):
    _, enc = model_and_encoder
    cached = Encoder(enc.processor, "qwen2", prompt_cache=4)
    sample = Sample([{"role": "user", "content": "Hi."}], ["Hello."])
    first = cached.encode(sample)
    assert cached.encode(sample).prompt is first.prompt
    copy = pickle.loads(pickle.dumps(cached))
    assert copy.prompt_cache == 4 and not copy._prompts  # a worker starts with its own, empty cache
    again = copy.encode(sample)
    assert again.prompt.input_ids == first.prompt.input_ids and copy.encode(sample).prompt is again.prompt


def test_scorer_refuses_an_unknown_layout(model_and_encoder):
    model, enc = model_and_encoder
    with pytest.raises(ValueError, match="layout"):
        RewardScorer(model, encoder=enc, layout="packed")
