"""The GPU attention path's logic, checked on CPU: segment plans, the unit decomposition (reference backend), flex
forward, and a RewardModel switched to the registered attention functions (rewards and gradients unchanged)."""

import pytest
import torch

from basereward.collate import collate_padded, collate_shared
from basereward.model import gpu_attention as ga
from basereward.model.processor import load_processor
from basereward.model.reward_model import RewardModel
from basereward.template import Encoder
from basereward.types import ImageRef, Sample


@pytest.fixture(scope="module")
def setup(tiny_dirs, tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("gpu-attn")
    Image.new("RGB", (112, 84), "red").save(d / "a.png")
    Image.new("RGB", (56, 112), "blue").save(d / "b.png")
    enc = Encoder(load_processor(tiny_dirs["qwen2_5_vl"], "qwen2_5_vl"), "qwen2_5_vl")
    samples = [
        Sample(
            [{"role": "user", "content": "<image>\nWhat colour?"}],
            ["Red.", "Blue, surely.", "no"],
            [ImageRef(path=str(d / "a.png"))],
        ),
        Sample(
            [{"role": "user", "content": "<image>\nDescribe it in detail."}],
            ["A tall blue box.", "Green"],
            [ImageRef(path=str(d / "b.png"))],
        ),
    ]
    return tiny_dirs["qwen2_5_vl"], enc, [enc.encode(s) for s in samples]


def new_model(model_dir):
    model = RewardModel.from_backbone(model_dir, seed=1)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():  # a head that spreads rewards, so relative differences are meaningful
        for p in model.head.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model


def test_segments_and_plan_units(setup):
    _, enc, encoded = setup
    batch = collate_shared(encoded, enc.pad_id)
    seg = ga.segments_of(batch)
    assert (seg >= 0).long().equal(batch.valid_mask)
    # the segments rebuild the collator's own mask
    from basereward.collate import shared_attention_mask

    assert shared_attention_mask(seg).equal(batch.attention_mask)
    plan = ga.build_plan(seg, "reference", "cpu")
    p0 = int((seg[0] == 0).sum())
    lens = batch.response_lengths.tolist()
    assert (plan.cu_q[1:] - plan.cu_q[:-1]).tolist()[:4] == [p0, *lens[:3]]
    assert (plan.cu_k[1:] - plan.cu_k[:-1]).tolist()[:4] == [p0, *(p0 + n for n in lens[:3])]


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("backend", ["reference", "flex"])
def test_backend_equals_dense_mask_sdpa(setup, backend):
    _, enc, encoded = setup
    batch = collate_shared(encoded, enc.pad_id)
    seg = ga.segments_of(batch)
    b, length = seg.shape
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(b, 4, length, 16, generator=gen)
    k, v = (torch.randn(b, 2, length, 16, generator=gen) for _ in range(2))
    dense = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=batch.attention_mask, enable_gqa=True
    ).transpose(1, 2)
    got, _ = ga.prefix_attention(None, q, k, v, None, prefix_plan=ga.build_plan(seg, backend, "cpu"))
    valid = (seg >= 0)[:, :, None, None]
    assert ((got - dense) * valid).abs().max().item() < 1e-5


def test_self_test_and_cpu_choice():
    assert ga.self_test("reference", "cpu") == 0.0
    assert ga.self_test("reference", "cpu", causal=False) == 0.0
    assert ga.choose_backend("cpu", log=lambda *_: None) == "reference"


@pytest.mark.parametrize("layout", ["shared", "padded"])
def test_reward_model_with_registered_attention(setup, layout):
    """Rewards and gradients through TEXT_IMPL / VISION_IMPL (reference kernels) equal the stock SDPA path."""
    model_dir, enc, encoded = setup
    collate = collate_shared if layout == "shared" else collate_padded

    def run(model):
        model.zero_grad()
        r = model(collate(encoded, enc.pad_id))
        r.sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return r.detach(), grads

    ref_r, ref_g = run(new_model(model_dir))
    model = new_model(model_dir)
    chosen = ga.enable(model, "reference", vision_backend="reference", log=lambda *_: None)
    assert chosen == {"text": "reference", "vision": "reference"}
    assert model.backbone.config.text_config._attn_implementation == ga.TEXT_IMPL
    assert model.backbone.config.vision_config._attn_implementation == ga.VISION_IMPL
    r, g = run(model)
    assert ((r - ref_r).abs() / ref_r.abs().clamp_min(1e-3)).max().item() <= 1e-4
    assert torch.nn.functional.cosine_similarity(g, ref_g, dim=0).item() >= 0.99999
    ga.disable(model)
    assert model.attention_adapter is None
