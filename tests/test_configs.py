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


def test_scale_out_recipes_divide_their_global_batch():
    """The 7B recipe runs as FSDP on 8 GPUs (and 64 via SLURM), the LoRA variant on one GPU; the header commands name
    what they launch."""
    full = load_config(ROOT / "configs" / "basereward-qwen2.5-vl-7b.yaml")
    assert full.distributed.strategy == "fsdp" and full.precision == "bf16"
    assert full.grad_accum(8) == 8 and full.grad_accum(64) == 1
    assert (
        "torchrun --nproc_per_node 8 -m basereward train"
        in (ROOT / "configs" / "basereward-qwen2.5-vl-7b.yaml").read_text()
    )
    lora = load_config(ROOT / "configs" / "basereward-qwen2.5-vl-7b-lora.yaml")
    assert lora.lora.rank == 64 and lora.grad_accum(1) == 64 and lora.freeze_vision
    sbatch = (ROOT / "configs" / "slurm-multinode.sbatch").read_text()
    assert "--nnodes" in sbatch and "--rdzv_endpoint" in sbatch and "basereward-qwen2.5-vl-7b.yaml" in sbatch
