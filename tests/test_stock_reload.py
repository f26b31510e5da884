"""A reward-model checkpoint directory (what `basereward train` writes as `final/`) and a `basereward export
--format hf` directory, opened with stock transformers only: which classes load it, what they report missing, and
that their forward gives our hidden states and rewards. The stock side never goes through basereward's loader (no
fast vision kernels, transformers' own attention), so every equality here is between two separate forwards."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

from basereward.cli import main as cli_main
from basereward.config import HeadConfig
from basereward.model.backbone import hidden_size
from basereward.model.processor import load_processor
from basereward.model.reward_model import RewardModel, load_reward_model
from basereward.scoring import RewardScorer
from basereward.types import ImageRef, Sample

STOCK_CLASS = {"qwen2_5_vl": "Qwen2_5_VLModel", "qwen2": "Qwen2Model"}
WITH_LM_HEAD = {"qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration", "qwen2": "Qwen2ForCausalLM"}
QUESTION = "What colour is the shape?"
RESPONSES = ["The shape is red.", "It is blue."]
README = Path(__file__).resolve().parents[1] / "README.md"


# Stock transformers + torch only (no basereward, no torchvision): rewards of an image prompt's responses from a
# `basereward export --format hf` directory. The image processor is transformers' PIL one; each <|image_pad|> of
# the rendered prompt is expanded to one token per merged patch, as Qwen2.5-VL's processor does.
def image_snippet() -> str:
    """The README's image-prompt block (marked `<!-- hf-image-snippet -->`): the test runs what users read."""
    match = re.search(r"<!-- hf-image-snippet[^>]*-->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert match, "README: no <!-- hf-image-snippet --> python block"
    return match.group(1)


def noisy_image(path: Path, seed: int) -> Path:
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (84, 112, 3), generator=gen, dtype=torch.uint8)
    Image.fromarray(pixels.numpy()).save(path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tiny_dirs, tmp_path_factory):
    """{arch: (model, processor, checkpoint dir)}: every backbone tensor moved off the initial checkpoint (so a
    reload of the base instead of ours would show), a 2-layer head, reward statistics, saved as training saves
    `final/`."""
    root = tmp_path_factory.mktemp("stock")
    out = {}
    for i, arch in enumerate(("qwen2_5_vl", "qwen2")):
        model = RewardModel.from_backbone(tiny_dirs[arch], HeadConfig(layers=2, activation="silu"), seed=i)
        gen = torch.Generator().manual_seed(10 + i)
        with torch.no_grad():
            for p in model.backbone.parameters():
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
        model.eval()
        model.reward_stats = {"mean": 0.25, "std": 1.5, "n": 8, "split": "validation"}
        proc = load_processor(tiny_dirs[arch], arch)
        out[arch] = (model, proc, model.save(root / arch / "final", proc))
    out["image"] = noisy_image(root / "shape.png", seed=3)
    return out


def loading_report(info: dict) -> dict:
    """`output_loading_info=True`'s dict with every collection sorted into a list (transformers 5 returns sets)."""
    return {k: sorted(map(str, v)) for k, v in info.items()}


def encoded_inputs(proc, arch: str, image: Path, response: str) -> dict:
    """One prompt + response as model inputs, built by basereward's encoder (the input both sides share)."""
    from basereward.template import Encoder

    images = [ImageRef(path=str(image))] if arch == "qwen2_5_vl" else []
    content = ("<image>" if images else "") + QUESTION
    enc = Encoder(proc, arch).encode(Sample([{"role": "user", "content": content}], [response], images))
    ids = enc.prompt.input_ids + enc.responses[0]
    inputs = {"input_ids": torch.tensor([ids])}
    if images:
        inputs["pixel_values"] = enc.prompt.pixel_values
        inputs["image_grid_thw"] = enc.prompt.image_grid_thw
        inputs["mm_token_type_ids"] = torch.tensor(
            [enc.prompt.mm_token_type_ids + [0] * len(enc.responses[0])]
        )
        assert int(inputs["mm_token_type_ids"].sum()) > 0
    return inputs


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2"])
def test_automodel_loads_the_backbone_with_nothing_missing_and_our_weights(checkpoints, tiny_dirs, arch):
    model, _, ckpt = checkpoints[arch]
    assert json.loads((ckpt / "config.json").read_text())["architectures"] == [STOCK_CLASS[arch]]
    stock, info = transformers.AutoModel.from_pretrained(ckpt, dtype=torch.float32, output_loading_info=True)
    assert type(stock).__name__ == STOCK_CLASS[arch]
    assert loading_report(info) == {
        "missing_keys": [],
        "unexpected_keys": [],
        "mismatched_keys": [],
        "error_msgs": [],
    }
    ours = model.backbone.state_dict()
    theirs = stock.state_dict()
    assert set(theirs) == set(ours)
    for k, v in ours.items():
        assert torch.equal(theirs[k], v), k
    # and these are the trained tensors, not the base checkpoint's
    base = transformers.AutoModel.from_pretrained(tiny_dirs[arch], dtype=torch.float32).state_dict()
    assert set(base) == set(ours)
    assert not any(torch.equal(base[k], ours[k]) for k in ours if ours[k].is_floating_point())


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2"])
def test_stock_forward_gives_our_hidden_states_and_rewards(checkpoints, arch):
    """transformers' own forward of the checkpoint (AutoModel, default attention, no basereward kernels) gives the
    hidden states of basereward's loaded backbone, and our head on its last token gives the scorer's reward."""
    _, proc, ckpt = checkpoints[arch]
    stock = transformers.AutoModel.from_pretrained(ckpt, dtype=torch.float32).eval()
    ours, our_proc = load_reward_model(ckpt)
    scorer = RewardScorer(ours, our_proc)
    images = [ImageRef(path=str(checkpoints["image"]))] if arch == "qwen2_5_vl" else []
    content = ("<image>" if images else "") + QUESTION
    expected = scorer([Sample([{"role": "user", "content": content}], RESPONSES, images)])[0]
    assert expected[0] != expected[1]
    for response, reward in zip(RESPONSES, expected):
        inputs = encoded_inputs(proc, arch, checkpoints["image"], response)
        with torch.no_grad():
            h_stock = stock(**inputs).last_hidden_state
            h_ours = ours.backbone(**inputs, use_cache=False).last_hidden_state
            stock_reward = ours.head(h_stock[0, -1].float()).item()
        assert h_stock.shape == (1, inputs["input_ids"].shape[1], hidden_size(ours.backbone))
        torch.testing.assert_close(h_stock, h_ours, atol=2e-5, rtol=1e-5)
        assert stock_reward == pytest.approx(reward, abs=1e-5)


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2"])
def test_lm_head_classes_load_with_only_the_lm_head_missing(checkpoints, arch):
    """The checkpoint has no LM head (a reward model never computes logits): the generation classes load it with
    exactly `lm_head.weight` freshly initialised and everything else ours."""
    model, _, ckpt = checkpoints[arch]
    cls = getattr(transformers, WITH_LM_HEAD[arch])
    full, info = cls.from_pretrained(ckpt, dtype=torch.float32, output_loading_info=True)
    assert loading_report(info) == {
        "missing_keys": ["lm_head.weight"],
        "unexpected_keys": [],
        "mismatched_keys": [],
        "error_msgs": [],
    }
    inner = full.model.state_dict()
    ours = model.backbone.state_dict()
    assert set(inner) == set(ours)
    assert all(torch.equal(inner[k], v) for k, v in ours.items())
    assert "lm_head.weight" not in load_file(str(ckpt / "model.safetensors"))


def test_export_hf_loads_in_a_stock_process_with_images_and_gives_our_rewards(checkpoints, tmp_path, capsys):
    """`basereward export --format hf`, then a separate Python process with transformers, torch and PIL only: the
    image prompt's rewards and calibrated rewards equal `load_reward_model`'s, and the token ids it builds are
    basereward's for the same prompt."""
    _, _, ckpt = checkpoints["qwen2_5_vl"]
    out = tmp_path / "hf"
    assert cli_main(["export", "--model", str(ckpt), "--out", str(out), "--format", "hf"]) == 0
    capsys.readouterr()
    snippet = tmp_path / "stock_image_reward.py"
    snippet.write_text(image_snippet())
    check = (
        "import json, runpy, sys\n"
        f"sys.argv = [{str(snippet)!r}, {str(out)!r}, {str(checkpoints['image'])!r}]\n"
        f"runpy.run_path({str(snippet)!r}, run_name='__main__')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('basereward', 'torchvision'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == []  # neither basereward nor torchvision was imported
    got = json.loads(lines[-2])

    model, processor = load_reward_model(out)
    scorer = RewardScorer(model, processor)
    image = [ImageRef(path=str(checkpoints["image"]))]
    sample = Sample([{"role": "user", "content": "<image>" + QUESTION}], RESPONSES, image)
    expected = scorer([sample])[0]
    assert got["rewards"] == pytest.approx(expected, abs=1e-5)
    assert got["normalised"] == pytest.approx([(r - 0.25) / 1.5 for r in expected], abs=1e-5)
    enc = scorer.encode(sample)
    assert got["ids_of_last"] == enc.prompt.input_ids + enc.responses[-1]
