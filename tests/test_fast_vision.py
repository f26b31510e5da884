"""The fast vision kernels (patch embedding as a matmul, equal-length attention runs batched) are the stock
arithmetic in another order: checked against the stock Conv3d, the one-call-per-unit reference kernel and a
stock-loaded model (rewards and gradients, both VL architectures, images of different sizes)."""

import pytest
import torch

from basereward.collate import collate_shared
from basereward.model import fast_vision as fv
from basereward.model import gpu_attention as ga
from basereward.model.backbone import load_backbone
from basereward.model.processor import load_processor
from basereward.model.reward_model import RewardModel
from basereward.template import Encoder
from basereward.types import ImageRef, Sample


def test_patch_matmul_equals_conv3d():
    gen = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv3d(3, 40, kernel_size=(2, 14, 14), stride=(2, 14, 14), bias=False)
    x = torch.randn(57, 3, 2, 14, 14, generator=gen)
    fast = fv.PatchMatmul(conv)
    assert fast.weight is conv.weight  # same Parameter: optimisers and checkpoints see no change
    assert torch.allclose(fast(x), conv(x), atol=1e-5, rtol=1e-5)
    assert fast(x).shape == conv(x).shape
    # a conv that is not one-kernel-per-patch is never replaced
    assert not fv.patch_conv_is_matmul(torch.nn.Conv3d(3, 8, kernel_size=(2, 14, 14), stride=(1, 7, 7)))


@pytest.mark.parametrize("causal", [False, True])
def test_runs_backend_equals_reference_kernel(causal):
    """Units of lengths 5,5,5,3,3,8,5 (runs of 3, 2, 1, 1) with GQA heads: one SDPA call per run == one per unit."""
    gen = torch.Generator().manual_seed(1)
    lq = [5, 5, 5, 3, 3, 8, 5]
    lk = [n + (4 if causal else 0) for n in lq]  # causal units see a 4-token prefix, as text responses do
    cu_q = torch.tensor([0, *torch.tensor(lq).cumsum(0).tolist()], dtype=torch.int32)
    cu_k = torch.tensor([0, *torch.tensor(lk).cumsum(0).tolist()], dtype=torch.int32)
    q = torch.randn(sum(lq), 4, 8, generator=gen)
    k, v = (torch.randn(sum(lk), 2, 8, generator=gen) for _ in range(2))
    args = (cu_q, cu_k, max(lq), max(lk), None, causal)
    runs, ref = ga.varlen("runs", q, k, v, *args), ga.varlen("reference", q, k, v, *args)
    assert runs.shape == ref.shape == q.shape
    assert (runs - ref).abs().max().item() < 1e-6
    assert ga.self_test("runs", "cpu", causal=causal) < 1e-6


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    import numpy as np
    from PIL import Image

    d = tmp_path_factory.mktemp("fast-vision")
    rng = np.random.default_rng(0)  # noise: every patch differs, so a mixed-up patch changes the output
    for name, (w, h) in (("a", (112, 84)), ("b", (56, 112)), ("c", (112, 84))):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"{name}.png")
    return d


def _samples(d):
    # a and c have equal grids (a run of two), b differs; sample 2 has two images
    return [
        Sample(
            [{"role": "user", "content": "<image>\nWhat colour?"}],
            ["Red.", "Blue, surely."],
            [ImageRef(path=str(d / "a.png"))],
        ),
        Sample(
            [{"role": "user", "content": "<image>\nDescribe it."}],
            ["A tall blue box."],
            [ImageRef(path=str(d / "b.png"))],
        ),
        Sample(
            [{"role": "user", "content": "<image><image>\nSame?"}],
            ["No.", "Yes", "maybe"],
            [ImageRef(path=str(d / "c.png")), ImageRef(path=str(d / "a.png"))],
        ),
    ]


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2_vl"])
def test_fast_model_equals_stock_model(tiny_dirs, images, arch):
    model_dir = tiny_dirs[arch]
    enc = Encoder(load_processor(model_dir, arch), arch)
    batch = collate_shared([enc.encode(s) for s in _samples(images)], enc.pad_id)

    def run(fast: bool):
        backbone = load_backbone(model_dir, fast_vision=fast)
        model = RewardModel(backbone, RewardModel.from_backbone(model_dir, seed=3).head, arch)
        with torch.no_grad():
            feats = backbone.visual(batch.pixel_values, grid_thw=batch.image_grid_thw)
            feats = getattr(feats, "pooler_output", feats)
        r = model(batch)
        r.sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return model, feats, r.detach(), grads

    stock, f0, r0, g0 = run(False)
    fast, f1, r1, g1 = run(True)
    assert (f1 - f0).abs().max().item() <= 1e-5 * f0.abs().max().item()  # the tower's merged image features
    assert isinstance(fast.backbone.visual.patch_embed.proj, fv.PatchMatmul)
    assert fast.backbone.config.vision_config._attn_implementation == ga.VISION_IMPL
    assert not isinstance(stock.backbone.visual.patch_embed.proj, fv.PatchMatmul)
    assert list(fast.state_dict()) == list(stock.state_dict())  # checkpoints are unchanged
    assert (r1 - r0).abs().max().item() <= 1e-5 * max(1.0, r0.abs().max().item())
    assert torch.nn.functional.cosine_similarity(g1, g0, dim=0).item() >= 0.99999


def test_left_alone_when_not_sdpa(tiny_dirs):
    eager = load_backbone(tiny_dirs["qwen2_5_vl"], attn_implementation="eager")
    assert eager.config.vision_config._attn_implementation == "eager"  # debugging runs stay stock
    # the matmul is exact whatever the attention
    assert isinstance(eager.visual.patch_embed.proj, fv.PatchMatmul)
    text = load_backbone(tiny_dirs["qwen2"])
    assert fv.enable(text) == {"patch_matmul": False, "vision_attention": None}
