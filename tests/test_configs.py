"""Every shipped training config loads and validates; overrides and bad keys behave."""

from pathlib import Path

import pytest

from basereward.config import TrainConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


TRAIN_CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml") if not p.name.startswith("grpo"))


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_shipped_training_configs_load(path):
    cfg = load_config(path)
    assert isinstance(cfg, TrainConfig)
    assert cfg.model.backbone and cfg.data.train


def test_demo_yaml_matches_the_embedded_demo_recipe():
    from basereward.demo import demo_config

    yaml_cfg = load_config(ROOT / "configs" / "demo.yaml")
    from basereward.demo import STEPS

    assert yaml_cfg.max_steps == STEPS
    embedded = demo_config(Path("runs/demo"), steps=STEPS)
    skip = {"output_dir", "model", "data"}
    for name in TrainConfig.__dataclass_fields__:
        if name not in skip:
            assert getattr(yaml_cfg, name) == getattr(embedded, name), name
    assert yaml_cfg.model.head == embedded.model.head


def test_paper_recipe_values():
    cfg = load_config(ROOT / "configs" / "basereward-qwen2.5-vl-7b.yaml")
    assert cfg.optim.lr == 3e-6 and cfg.batch_size == 128
    assert cfg.model.head.layers == 2 and cfg.model.head.activation == "silu"
    assert cfg.loss.center_coef == 0.0 and not cfg.loss.length_norm and not cfg.loss.use_margin


def test_overrides_and_errors():
    cfg = load_config(
        None, ["model.backbone=x", "data.train=t.jsonl", "optim.lr=1e-4", "model.head.layers=3"]
    )
    assert cfg.optim.lr == 1e-4 and cfg.model.head.layers == 3
    with pytest.raises(KeyError, match="optim.lrr"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(TypeError, match="batch_size"):
        load_config(None, ["batch_size=big"])
    with pytest.raises(ValueError, match="multiple of micro_batch_size"):
        load_config(None, ["batch_size=10", "micro_batch_size=4"])
