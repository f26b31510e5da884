"""Tiny checkpoints of the real architectures, the reward model, and its checkpoint directory."""

import json
import subprocess
import sys

import pytest
import torch

from basereward.config import HeadConfig
from basereward.model.head import RewardHead
from basereward.model.processor import load_processor
from basereward.model.reward_model import RewardModel, load_reward_model
from basereward.scoring import RewardScorer
from basereward.template import Encoder
from basereward.types import ImageRef, Sample


@pytest.fixture(scope="module")
def red_png(tmp_path_factory):
    from PIL import Image

    p = tmp_path_factory.mktemp("img") / "red.png"
    Image.new("RGB", (224, 168), "red").save(p)
    return p


def samples(with_image, red_png):
    imgs = [ImageRef(path=str(red_png))] if with_image else []
    tag = "<image>\n" if with_image else ""
    return [
        Sample(
            [{"role": "user", "content": tag + "What colour is it?"}],
            ["Red.", "Blue, I think."],
            imgs,
            id="a",
        ),
        Sample(
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"}], ["4"], id="b"
        ),
    ]


def test_init_tiny_writes_the_standard_hf_layout(tiny_dirs):
    for arch, d in tiny_dirs.items():
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["model_type"] == arch
        assert (d / "model.safetensors").is_file() and (d / "tokenizer.json").is_file()
        assert (d / "chat_template.jinja").is_file()
        if arch != "qwen2":
            assert json.loads((d / "processor_config.json").read_text())["processor_class"].endswith(
                "Processor"
            )


def test_processor_expands_image_tokens(tiny_dirs, red_png):
    proc = load_processor(tiny_dirs["qwen2_5_vl"], "qwen2_5_vl")
    enc = Encoder(proc, "qwen2_5_vl").encode(samples(True, red_png)[0])
    pad = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    # 224x168 -> resized within max_pixels 112*112 to multiples of 28: grid_thw gives the token count
    t, h, w = enc.prompt.image_grid_thw[0].tolist()
    assert enc.prompt.input_ids.count(pad) == t * h * w // 4 > 0
    assert sum(enc.prompt.mm_token_type_ids) == t * h * w // 4
    # every response ends with the scored <|im_end|> token
    end = proc.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert all(r[-1] == end for r in enc.responses)


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2_vl", "qwen2"])
def test_backbone_has_no_lm_head_and_batched_equals_single(tiny_dirs, arch, red_png):
    model = RewardModel.from_backbone(tiny_dirs[arch]).eval()
    assert not any("lm_head" in n for n, _ in model.named_parameters())
    proc = load_processor(tiny_dirs[arch], arch)
    scorer = RewardScorer(model, proc)
    s = samples(arch != "qwen2", red_png)
    batched = scorer(s)
    single = [scorer([Sample(x.prompt, [r], x.images, id=x.id)])[0][0] for x in s for r in x.responses]
    assert [len(x) for x in batched] == [2, 1]
    assert torch.allclose(torch.tensor(sum(batched, [])), torch.tensor(single), atol=1e-5)


def test_text_backbone_refuses_images(tiny_dirs, red_png):
    from basereward.types import DataError

    enc = Encoder(load_processor(tiny_dirs["qwen2"], "qwen2"), "qwen2")
    with pytest.raises(DataError, match="cannot take images"):
        enc.encode(samples(True, red_png)[0])


@pytest.mark.parametrize("layers,act", [(1, "none"), (2, "silu"), (2, "tanh"), (3, "relu"), (5, "silu")])
def test_head_shapes(layers, act):
    head = RewardHead(16, HeadConfig(layers=layers, activation=act, width=8))
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert len(linears) == layers and linears[-1].out_features == 1
    assert head(torch.randn(3, 16)).shape == (3,)
    with pytest.raises(ValueError):
        HeadConfig(layers=6)


def test_save_then_load_in_a_new_process_gives_identical_rewards(tiny_dirs, tmp_path, red_png):
    model = RewardModel.from_backbone(tiny_dirs["qwen2_5_vl"], seed=1).eval()
    with torch.no_grad():  # make the head non-trivial so the comparison means something
        for p in model.head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    proc = load_processor(tiny_dirs["qwen2_5_vl"], "qwen2_5_vl")
    model.reward_stats = {"mean": 0.5, "std": 2.0, "n": 4, "split": "validation"}
    out = model.save(tmp_path / "rm", proc)
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))
    expected = RewardScorer(model, proc)(samples(True, red_png))
    code = (
        "import json, sys\n"
        "from basereward.scoring import load_scorer\n"
        "from basereward.types import Sample, ImageRef\n"
        f"s = [Sample([{{'role': 'user', 'content': '<image>\\nWhat colour is it?'}}], ['Red.', 'Blue, I think.'],"
        f" [ImageRef(path={str(red_png)!r})], id='a'),"
        " Sample([{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': '2 + 2?'}], ['4'], id='b')]\n"
        f"sc = load_scorer({str(out)!r}, device='cpu', progress=False)\n"
        "print(json.dumps({'r': sc(s), 'stats': sc.model.reward_stats, 'norm': sc.normalize(2.5)}))\n"
    )
    proc_out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(proc_out.stdout.strip().splitlines()[-1])
    assert got["r"] == expected  # bit-identical in fp32
    assert got["stats"]["mean"] == 0.5 and got["norm"] == pytest.approx(1.0)


def test_load_reward_model_refuses_a_plain_backbone_dir(tiny_dirs):
    with pytest.raises(FileNotFoundError, match="basereward.json"):
        load_reward_model(tiny_dirs["qwen2"])


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2_vl"])
def test_encoder_gives_exactly_what_the_qwen_processor_gives(tiny_dirs, arch, tmp_path):
    """The Encoder expands image pads itself (no per-call processor overhead); it must match the processor's own
    `__call__` exactly: ids, token types, pixels, grids. Multi-image, non-square and text-only prompts."""
    from PIL import Image

    from basereward.template import to_content_parts

    paths = []
    for i, size in enumerate([(224, 112), (84, 168), (300, 300)]):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", size, (40 * i, 100, 200)).save(paths[-1])
    proc = load_processor(tiny_dirs[arch], arch)
    enc = Encoder(proc, arch)
    cases = [
        Sample(
            [{"role": "user", "content": "<image>\nFirst <image> then\n<image> all three?"}],
            ["a"],
            [ImageRef(path=str(p)) for p in paths],
        ),
        Sample(
            [{"role": "system", "content": "S."}, {"role": "user", "content": "<image>What?"}],
            ["a"],
            [ImageRef(path=str(paths[1]))],
        ),
        Sample([{"role": "user", "content": "No image at all."}], ["a"]),
    ]
    for s in cases:
        ours = enc.encode(s).prompt
        text = proc.apply_chat_template(
            to_content_parts(s.prompt), add_generation_prompt=True, tokenize=False
        )
        imgs = [r.load() for r in s.images] or None
        ref = proc(text=[text], images=imgs, return_tensors="pt")
        assert ours.input_ids == ref["input_ids"][0].tolist()
        assert ours.mm_token_type_ids == ref["mm_token_type_ids"][0].tolist()
        if imgs:
            assert torch.equal(ours.pixel_values, ref["pixel_values"])
            assert torch.equal(ours.image_grid_thw, ref["image_grid_thw"])
        else:
            assert ours.pixel_values is None and "pixel_values" not in ref


def test_placeholder_mismatch_is_a_named_error(tiny_dirs, red_png):
    from basereward.types import DataError

    enc = Encoder(load_processor(tiny_dirs["qwen2_5_vl"], "qwen2_5_vl"), "qwen2_5_vl")
    with pytest.raises(DataError, match="rec-7: 1 image"):
        enc.encode(
            Sample([{"role": "user", "content": "no tag"}], ["a"], [ImageRef(path=str(red_png))], id="rec-7")
        )
