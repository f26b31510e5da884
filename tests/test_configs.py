"""Every shipped training config loads and validates; overrides and bad keys behave."""

from pathlib import Path

import pytest

from basereward.config import ConfigError, TrainConfig, load_config

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


REQUIRED = ["model.backbone=x", "data.train=t.jsonl"]


def test_overrides_and_errors():
    cfg = load_config(None, [*REQUIRED, "optim.lr=1e-4", "model.head.layers=3"])
    assert cfg.optim.lr == 1e-4 and cfg.model.head.layers == 3
    with pytest.raises(
        ConfigError, match=r"override 'optim.lrr=1': optim.lrr: unknown key \(did you mean 'optim.lr'"
    ):
        load_config(None, [*REQUIRED, "optim.lrr=1"])
    with pytest.raises(
        ConfigError, match="override 'batch_size=big': batch_size: expected an integer, got 'big'"
    ):
        load_config(None, [*REQUIRED, "batch_size=big"])
    with pytest.raises(ConfigError, match="config: batch_size .10. must be a multiple of micro_batch_size"):
        load_config(None, [*REQUIRED, "batch_size=10", "micro_batch_size=4"])
    with pytest.raises(ConfigError, match="model.head: head.layers must be 1-5, got 9"):
        load_config(None, [*REQUIRED, "model.head.layers=9"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_config(None, ["max_steps"])


def _write(tmp_path, text: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


BASE = "model:\n  backbone: b\ndata:\n  train: t.jsonl\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (BASE + "optim:\n  lrr: 0.1\n", "optim.lrr: unknown key (did you mean 'optim.lr'?)"),
        (BASE + "optimizer: {lr: 0.1}\n", "optimizer: unknown key (did you mean 'optim'?)"),
        (BASE + "zzz: 1\n", "zzz: unknown key (valid keys here: output_dir, seed, model,"),
        (BASE + "batch_size: 12.5\n", "batch_size: expected an integer, got 12.5"),
        (BASE + "tensorboard: 1\n", "tensorboard: expected true/false, got 1"),
        (BASE + "optim:\n  lr: fast\n", "optim.lr: expected a number, got 'fast'"),
        (BASE + "loss: [1]\n", "loss: expected a mapping, got [1]"),
        ("data:\n  train: t.jsonl\n", "model.backbone: missing required key"),
        ("model: {backbone: b}\n", "data.train: missing required key"),
        ("model: {backbone: ''}\ndata: {train: t}\n", "model.backbone: required, must not be empty"),
        (BASE + "precision: fp16\n", "precision must be one of"),
    ],
)
def test_bad_training_configs_name_the_file_and_the_dotted_key(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)


def test_every_problem_is_reported_and_overrides_are_named_apart_from_the_file(tmp_path):
    path = _write(tmp_path, "optim: {lr: fast}\nseedd: 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, ["data.train=t", "max_steps=many"])
    text = str(e.value)
    assert text.startswith("4 problems: ")
    for part in (
        f"{path}: model.backbone: missing required key",
        f"{path}: optim.lr: expected a number, got 'fast'",
        f"{path}: seedd: unknown key (did you mean 'seed'?)",
        "override 'max_steps=many': max_steps: expected an integer, got 'many'",
    ):
        assert part in text
    with pytest.raises(ConfigError, match="cfg.yaml: a config file must be a mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="cfg.yaml: cannot read config file"):
        load_config(_write(tmp_path, "a: [\n"))


def test_train_and_grpo_verbs_print_a_config_problem_as_one_line(tmp_path):
    from data_fixtures import cli

    path = _write(tmp_path, BASE + "optim: {lrr: 1}\n")
    rc, out, err = cli("train", "--config", path)
    assert rc == 1 and out is None
    assert (
        err.strip()
        == f"basereward train: error: config: {path}: optim.lrr: unknown key (did you mean 'optim.lr'?)"
    )
    rc, out, err = cli("grpo", "--config", ROOT / "configs" / "grpo-demo.yaml", "num_generation=2")
    assert rc == 1 and "override 'num_generation=2': num_generation: unknown key (did you mean" in err


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
