"""LoRA reward models: adapters only in the language model, only adapters + head train, adapter checkpoints and
`basereward export` reload with equal rewards and the trained head, and the README's stock-transformers snippet
reproduces basereward's reward without importing it."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from basereward.cli import main as cli_main
from basereward.collate import collate_shared
from basereward.config import LoraArgs
from basereward.losses import bradley_terry
from basereward.model.lora import apply_lora, merge_lora
from basereward.model.processor import load_processor
from basereward.model.reward_model import RewardModel, load_reward_model
from basereward.scoring import RewardScorer
from basereward.template import Encoder
from basereward.types import ImageRef, Sample

README = Path(__file__).resolve().parents[1] / "README.md"
ARCH = "qwen2_5_vl"


def pairs(image: Path) -> list[Sample]:
    """Two image pairs and a text-only pair, as (chosen, rejected) samples."""
    img = [ImageRef(path=str(image))]
    return [
        Sample([{"role": "user", "content": "<image>\nWhat colour is it?"}], ["Red.", "Blue."], img, id="a"),
        Sample([{"role": "user", "content": "<image>\nIs it round?"}], ["No, square.", "Yes."], img, id="b"),
        Sample([{"role": "user", "content": "What is 2 + 2?"}], ["2 + 2 = 4.", "5"], id="c"),
    ]


def readme_snippet() -> str:
    match = re.search(r"<!-- hf-snippet[^>]*-->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert match, "README: no <!-- hf-snippet --> python block"
    return match.group(1)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.fixture(scope="module")
def trained(tiny_dirs, tmp_path_factory):
    """A LoRA reward model after 4 AdamW steps (vision blocks frozen, merger trained, as freeze_vision does),
    its parameters before and after, and its adapter checkpoint."""
    from PIL import Image

    root = tmp_path_factory.mktemp("lora")
    Image.new("RGB", (112, 112), "red").save(root / "red.png")
    model = RewardModel.from_backbone(tiny_dirs[ARCH], seed=0)
    summary = apply_lora(model, LoraArgs(rank=4, alpha=8.0))
    # the trainer's freeze_vision, applied after LoRA: blocks frozen, merger trained
    for name, p in model.backbone.visual.named_parameters():
        p.requires_grad_(name.startswith("merger."))
    proc = load_processor(tiny_dirs[ARCH], ARCH)
    enc = Encoder(proc, ARCH)
    batch = collate_shared([enc.encode(s) for s in pairs(root / "red.png")], enc.pad_id)
    before = snapshot(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    model.train()
    for _ in range(4):  # B starts at zero, so A first gets a gradient at step 2
        opt.zero_grad()
        r = model(batch)
        bradley_terry(r[0::2], r[1::2]).backward()
        opt.step()
    model.eval()
    ckpt = model.save(root / "ckpt", proc)
    return {
        "model": model,
        "proc": proc,
        "summary": summary,
        "before": before,
        "after": snapshot(model),
        "ckpt": ckpt,
        "root": root,
        "samples": pairs(root / "red.png"),
    }


def rewards(model, proc, samples) -> torch.Tensor:
    return torch.tensor(RewardScorer(model, proc)(samples))


def test_adapters_sit_only_on_the_language_models_targeted_linears(trained):
    from peft.tuners.lora import LoraLayer

    model, summary = trained["model"], trained["summary"]
    lora_modules = [n for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    n_layers = model.backbone.config.text_config.num_hidden_layers
    assert len(lora_modules) == summary["targeted_modules"] == 7 * n_layers
    assert all(n.startswith("backbone.language_model.layers.") for n in lora_modules)
    # the vision blocks have gate_proj/up_proj/down_proj too: none of them may carry an adapter
    assert not [n for n, _ in model.backbone.visual.named_parameters() if "lora_" in n]
    assert (
        summary["adapter_params"] == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) > 0
    )
    assert model.lora == {
        "rank": 4,
        "alpha": 8.0,
        "dropout": 0.0,
        "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    }


def test_only_adapters_head_and_unfrozen_tensors_change(trained):
    before, after = trained["before"], trained["after"]
    lm_base = [n for n in before if n.startswith("backbone.language_model.") and "lora_" not in n]
    frozen_vision = [n for n in before if n.startswith("backbone.visual.") and ".merger." not in n]
    changing = [n for n in before if "lora_" in n or n.startswith("head.") or ".merger." in n]
    assert lm_base and frozen_vision and changing
    assert any("embed_tokens" in n for n in lm_base)
    assert set(lm_base) | set(frozen_vision) | set(changing) == set(before)
    for n in lm_base + frozen_vision:
        assert torch.equal(before[n], after[n]), f"frozen {n} changed"
    unchanged = [n for n in changing if torch.equal(before[n], after[n])]
    assert not unchanged, f"adapter/head tensors that did not train: {unchanged}"


def test_adapter_checkpoint_reloads_with_equal_rewards_and_the_trained_head(trained):
    model, ckpt, samples = trained["model"], trained["ckpt"], trained["samples"]
    files = {p.name for p in ckpt.iterdir()}
    assert {"adapter.safetensors", "head.safetensors", "basereward.json", "tokenizer.json"} <= files
    assert not [f for f in files if f.startswith("model")]  # no copy of the frozen base
    saved = load_file(str(ckpt / "adapter.safetensors"))
    # adapters + the merger (trained in full); nothing of the frozen base
    assert {k for k in saved if "lora_" not in k} == {
        n.removeprefix("backbone.")
        for n, p in model.named_parameters()
        if p.requires_grad and "lora_" not in n and n.startswith("backbone.")
    }
    meta = json.loads((ckpt / "basereward.json").read_text())["adapter"]
    assert meta["base_model"] == str(Path(model.base_dir)) and meta["rank"] == 4 and meta["alpha"] == 8.0

    expected = rewards(model, trained["proc"], samples)
    loaded, proc = load_reward_model(ckpt)
    assert loaded.lora is None and loaded.merged_lora == model.lora
    assert not any("lora_" in k or "base_layer" in k for k in loaded.state_dict())
    torch.testing.assert_close(rewards(loaded, proc, samples), expected, atol=1e-5, rtol=0)
    # the head is the trained one, not a fresh initialisation
    for k, v in model.head.state_dict().items():
        assert torch.equal(loaded.head.state_dict()[k], v)
        assert not torch.equal(trained["before"]["head." + k], v)

    resumed, _ = load_reward_model(ckpt, merge_lora=False)  # a LoRA run's resume keeps the adapters trainable
    assert resumed.lora == model.lora
    lm = {
        n: p.requires_grad for n, p in resumed.named_parameters() if n.startswith("backbone.language_model.")
    }
    assert lm and all(grad == ("lora_" in n) for n, grad in lm.items())
    torch.testing.assert_close(rewards(resumed, proc, samples), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("fmt", ["basereward", "hf"])
def test_export_merges_into_stock_keys_and_reloads_with_equal_rewards(trained, tiny_dirs, fmt, capsys):
    out = trained["root"] / f"export-{fmt}"
    assert cli_main(["export", "--model", str(trained["ckpt"]), "--out", str(out), "--format", fmt]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["merged_adapter"]["rank"] == 4 and result["out"] == str(out)
    stock_keys = set(RewardModel.from_backbone(tiny_dirs[ARCH]).backbone.state_dict())
    weights = load_file(str(out / "model.safetensors"))
    assert set(weights) == stock_keys  # no lora_A / base_layer: the stock Hugging Face keys
    head = load_file(str(out / "head.safetensors"))
    assert all(torch.equal(head[k], v) for k, v in trained["model"].head.state_dict().items())
    loaded, proc = load_reward_model(out)
    expected = rewards(trained["model"], trained["proc"], trained["samples"])
    torch.testing.assert_close(rewards(loaded, proc, trained["samples"]), expected, atol=1e-5, rtol=0)
    assert json.loads((out / "basereward.json").read_text())["merged_adapter"]["rank"] == 4
    assert (out / "reward_head.safetensors").is_file() == (fmt == "hf")
    if fmt == "hf":
        from transformers import Qwen2_5_VLModel

        stock = Qwen2_5_VLModel.from_pretrained(out, dtype=torch.float32)
        assert all(torch.equal(v, weights[k]) for k, v in stock.state_dict().items())


def test_readme_snippet_loads_the_export_with_stock_transformers_only(trained):
    """The README's code block runs as written (the dir as argv[1]) in a fresh process; its printed reward equals
    basereward's for the same prompt/response, and basereward was never imported."""
    snippet = trained["root"] / "snippet.py"
    snippet.write_text(readme_snippet())
    out = trained["root"] / "export-hf-snippet"
    assert cli_main(["export", "--model", str(trained["ckpt"]), "--out", str(out), "--format", "hf"]) == 0
    wrapper = (
        "import json, runpy, sys\n"
        f"sys.argv = [{str(snippet)!r}, {str(out)!r}]\n"
        f"g = runpy.run_path({str(snippet)!r}, run_name='__main__')\n"
        "mods = [m for m in sys.modules if m == 'basereward' or m.startswith('basereward.')]\n"
        "print(json.dumps({'messages': g['messages'], 'response': g['response'], 'imported': mods}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapper], capture_output=True, text=True, cwd=trained["root"]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    info = json.loads(lines[-1])
    assert info["imported"] == []
    printed = float(re.fullmatch(r"reward = (\S+)", lines[-2]).group(1))
    loaded, processor = load_reward_model(out)
    ours = RewardScorer(loaded, processor)([Sample(info["messages"], [info["response"]])])[0][0]
    assert printed == pytest.approx(ours, abs=1e-5)


def test_plain_checkpoint_export_is_a_copy_and_the_snippet_fits_any_head(
    tiny_dirs, tmp_path, monkeypatch, capsys
):
    """A full (non-LoRA) checkpoint of a text backbone with a 3-layer ReLU head (with dropout, which shifts the
    module indices) exports unchanged; the README snippet, run in this process, reads it with AutoModel."""
    from basereward.config import HeadConfig

    model = RewardModel.from_backbone(
        tiny_dirs["qwen2"], HeadConfig(layers=3, activation="relu", dropout=0.1, width=32), seed=4
    ).eval()
    model.reward_stats = {"mean": 0.1, "std": 2.0, "n": 8, "split": "validation"}
    proc = load_processor(tiny_dirs["qwen2"], "qwen2")
    src = model.save(tmp_path / "plain", proc)
    out = tmp_path / "export"
    assert cli_main(["export", "--model", str(src), "--out", str(out), "--format", "hf"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["merged_adapter"] is None
    a, b = load_file(str(src / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    spec = json.loads((out / "reward_head.json").read_text())
    assert [x["out"] for x in spec["linear_layers"]] == [32, 32, 1] and spec["reward_stats"]["std"] == 2.0

    monkeypatch.setattr(sys, "argv", ["snippet", str(out)])
    scope: dict = {"__name__": "__main__"}
    exec(compile(readme_snippet(), "README snippet", "exec"), scope)
    ours = RewardScorer(model, proc)([Sample(scope["messages"], [scope["response"]])])[0][0]
    assert scope["reward"] == pytest.approx(ours, abs=1e-5)


def test_text_backbone_lora_round_trip(tiny_dirs, tmp_path):
    model = RewardModel.from_backbone(tiny_dirs["qwen2"], seed=2)
    summary = apply_lora(model, LoraArgs(rank=2, targets="q_proj,v_proj"))
    assert summary["targeted_modules"] == 2 * model.backbone.config.num_hidden_layers
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if "lora_" in n or n.startswith("head.")
    }
    with torch.no_grad():  # give the adapters a non-zero effect
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    model.eval()
    proc = load_processor(tiny_dirs["qwen2"], "qwen2")
    samples = [Sample([{"role": "user", "content": "Hi?"}], ["Hello.", "Go away."])]
    expected = rewards(model, proc, samples)
    ckpt = model.save(tmp_path / "ckpt", proc)
    loaded, _ = load_reward_model(ckpt)
    torch.testing.assert_close(rewards(loaded, proc, samples), expected, atol=1e-5, rtol=0)
    merge_lora(model)  # in place: plain Linear again, same rewards
    assert set(model.backbone.state_dict()) == set(loaded.backbone.state_dict())
    torch.testing.assert_close(rewards(model, proc, samples), expected, atol=1e-5, rtol=0)


def test_save_writes_a_given_full_state_dict(tiny_dirs, tmp_path):
    """The FSDP path: rank 0 passes the gathered full state dict; the files hold it, not the module's tensors."""
    model = RewardModel.from_backbone(tiny_dirs["qwen2"], seed=0)
    sd = {k: v.clone() + 1.0 for k, v in model.state_dict().items()}
    out = model.save(tmp_path / "plain", state_dict=sd)
    w = load_file(str(out / "model.safetensors"))
    assert len(w) == len(model.backbone.state_dict())
    assert all(torch.equal(w[k], sd["backbone." + k]) for k in w)
    assert torch.equal(load_file(str(out / "head.safetensors"))["mlp.0.weight"], sd["head.mlp.0.weight"])
    with pytest.raises(ValueError, match="head keys"):  # a gathered dict that lost the head never writes
        model.save(tmp_path / "nohead", state_dict={k: v for k, v in sd.items() if not k.startswith("head.")})

    apply_lora(model, LoraArgs(rank=2, targets="q_proj"))
    sd = {k: v.clone() + 1.0 for k, v in model.state_dict().items()}
    out = model.save(tmp_path / "lora", state_dict=sd)
    w = load_file(str(out / "adapter.safetensors"))
    assert w and all("lora_" in k and torch.equal(v, sd["backbone." + k]) for k, v in w.items())


def test_bad_input(trained, tiny_dirs, tmp_path, capsys):
    # not a checkpoint: one line, rc 1
    assert cli_main(["export", "--model", str(tiny_dirs[ARCH]), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "basereward.json" in err and not (tmp_path / "x").exists()
    # an adapter checkpoint whose base has moved: the missing path is named; --base-model fixes it
    moved = tmp_path / "moved"
    shutil.copytree(trained["ckpt"], moved)
    meta = json.loads((moved / "basereward.json").read_text())
    meta["adapter"]["base_model"] = str(tmp_path / "gone" / "base")
    (moved / "basereward.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "gone" / "base"))):
        load_reward_model(moved)
    assert cli_main(["export", "--model", str(moved), "--out", str(tmp_path / "y")]) == 1
    assert str(tmp_path / "gone" / "base") in capsys.readouterr().err
    args = [
        "export",
        "--model",
        str(moved),
        "--out",
        str(tmp_path / "y"),
        "--base-model",
        str(tiny_dirs[ARCH]),
    ]
    assert cli_main(args) == 0 and (tmp_path / "y" / "model.safetensors").is_file()
    # a non-empty --out is refused, nothing in it touched
    assert cli_main(args) == 1 and "not an empty directory" in capsys.readouterr().err
    # wrong targets, and adapters twice
    model = RewardModel.from_backbone(tiny_dirs["qwen2"])
    with pytest.raises(ValueError, match="no_such_proj"):
        apply_lora(model, LoraArgs(rank=2, targets="no_such_proj"))
    model = RewardModel.from_backbone(tiny_dirs["qwen2"])
    apply_lora(model, LoraArgs(rank=2))
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_lora(model, LoraArgs(rank=2))


@pytest.fixture(scope="module")
def lora_run(tiny_dirs, tmp_path_factory):
    """`basereward train` settings for a 3-step LoRA run (vision blocks frozen) as key=value overrides, so the
    one-process and the torchrun runs read the same configuration."""
    from basereward.data.synthetic import synthesize

    data = tmp_path_factory.mktemp("lora-data")
    synthesize(data, pairs=32, eval_pairs=8, seed=1, text_share=0.25)

    def overrides(out, **extra) -> list[str]:
        kw = {
            "output_dir": out,
            "model.backbone": tiny_dirs[ARCH],
            "data.train": data / "train.jsonl",
            "data.validation": data / "validation.jsonl",
            "lora.rank": 4,
            "freeze_vision": "true",
            "optim.lr": 0.01,
            "optim.eps": 1e-6,
            "optim.warmup_steps": 1,
            "batch_size": 4,
            "micro_batch_size": 2,
            "max_steps": 3,
            "progress": "false",
            "tensorboard": "false",
            **extra,
        }
        return [f"{k}={v}" for k, v in kw.items()]

    return overrides


def train_one_process(overrides: list[str]) -> Path:
    from basereward.config import load_config
    from basereward.train import main as train_main

    return Path(train_main(load_config(None, overrides))["model_dir"])


def final_tensors(final: Path) -> dict[str, torch.Tensor]:
    return {
        **load_file(str(final / "adapter.safetensors")),
        **{"head." + k: v for k, v in load_file(str(final / "head.safetensors")).items()},
    }


def test_trainer_lora_run_writes_an_adapter_checkpoint_and_resumes_exactly(tiny_dirs, lora_run, tmp_path):
    """`basereward train` with lora.rank > 0: the final directory is an adapter checkpoint on the base backbone,
    the language model's base weights are untouched, and a resumed run ends with the same adapters and head."""
    final = train_one_process(lora_run(tmp_path / "full", save_every=1, keep_checkpoints=5))
    assert (final / "adapter.safetensors").is_file() and not (final / "model.safetensors").exists()
    trained = final_tensors(final)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in trained.items())  # the adapters trained
    model, _ = load_reward_model(final, merge_lora=False)
    base = RewardModel.from_backbone(tiny_dirs[ARCH]).backbone.state_dict()
    for k, v in model.backbone.state_dict().items():
        if "lora_" not in k and not k.startswith("visual.merger."):
            assert torch.equal(v, base[k.replace(".base_layer.", ".")]), f"frozen {k} changed"

    resumed = tmp_path / "resumed"
    shutil.copytree(
        tmp_path / "full" / "checkpoints" / "step-000002", resumed / "checkpoints" / "step-000002"
    )
    again = final_tensors(train_one_process(lora_run(resumed, resume="auto")))
    assert set(again) == set(trained) and all(torch.equal(again[k], trained[k]) for k in trained)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_rank_lora_run_equals_one_process(lora_run, tmp_path, strategy):
    """Two ranks (gloo), DDP or FSDP2 (adapters sharded with their decoder layers and gathered on rank 0): the final
    adapter checkpoint must equal the one-process run's."""
    from dist_utils import torchrun

    single = final_tensors(train_one_process(lora_run(tmp_path / "single")))
    res = torchrun(["train", *lora_run(tmp_path / "multi", **{"distributed.strategy": strategy})], nproc=2)
    assert res.returncode == 0, res.stderr[-3000:]
    fsdp = final_tensors(tmp_path / "multi" / "final")
    assert set(fsdp) == set(single)
    # Gradients summed across ranks round differently (the losses agree to ~3e-8); Adam's per-element scaling turns
    # that into up to ~1e-4 on a few weights after 3 steps at lr 1e-2 (measured; DDP gives the same numbers as
    # FSDP). A lost or re-initialised adapter would be off by its trained size, > 1e-2.
    assert all(v.abs().max() > 1e-2 for k, v in single.items() if "lora_B" in k)
    for k in single:
        torch.testing.assert_close(fsdp[k], single[k], atol=1e-3, rtol=0)
