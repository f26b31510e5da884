"""Prefix-shared layout `[prompt | r1 | ... | rK]`: exact against separate forwards, with a negative control."""

import pytest
import torch

from basereward.collate import collate_padded, collate_shared, shared_attention_mask
from basereward.losses import bradley_terry
from basereward.model.processor import load_processor
from basereward.model.reward_model import RewardModel
from basereward.template import EncodedSample, Encoder
from basereward.types import ImageRef, Sample


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("img")
    out = {}
    for name, size, colour in (
        ("wide", (224, 112), "red"),
        ("tall", (84, 168), "blue"),
        ("square", (112, 112), "green"),
    ):
        Image.new("RGB", size, colour).save(d / f"{name}.png")
        out[name] = ImageRef(path=str(d / f"{name}.png"))
    return out


def model_and_encoder(tiny_dirs, arch):
    torch.manual_seed(0)
    model = RewardModel.from_backbone(tiny_dirs[arch], seed=3)
    with torch.no_grad():  # a head that spreads rewards, so relative differences are meaningful
        for p in model.head.parameters():
            p.normal_(0, 0.5)
    return model, Encoder(load_processor(tiny_dirs[arch], arch), arch)


def make_samples(images, vl: bool, k: int) -> list[Sample]:
    answers = [
        "Red.",
        "It is blue, I think.",
        "green",
        "A long answer with several words in it.",
        "no",
        "7",
        "The shape is a square on the left.",
        "Maybe.",
    ]
    img = (lambda name: [images[name]]) if vl else (lambda name: [])
    tag = "<image>\n" if vl else ""
    return [
        Sample([{"role": "user", "content": tag + "What colour is it?"}], answers[:k], img("wide"), id="a"),
        Sample(
            [
                {"role": "system", "content": "Be brief and precise."},
                {"role": "user", "content": tag + "Describe the picture in detail, please."},
            ],
            answers[-k:],
            img("tall"),
            id="b",
        ),
        Sample([{"role": "user", "content": "2 + 2?"}], (answers[1:] + answers[:1])[:k], [], id="c"),
    ]


def separate_rewards(model, encoded: list[EncodedSample], pad_id: int) -> torch.Tensor:
    """The independent reference: every (prompt, response) alone, batch of one, no padding."""
    out = []
    for e in encoded:
        for r in e.responses:
            out.append(model(collate_padded([EncodedSample(e.prompt, [r])], pad_id)))
    return torch.cat(out)


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2_vl", "qwen2"])
@pytest.mark.parametrize("k", [1, 2, 8])
def test_shared_rewards_equal_separate_forwards(tiny_dirs, images, arch, k):
    model, enc = model_and_encoder(tiny_dirs, arch)
    model.eval()
    encoded = [enc.encode(s) for s in make_samples(images, arch != "qwen2", k)]
    with torch.no_grad():
        ref = separate_rewards(model, encoded, enc.pad_id)
        shared = model(collate_shared(encoded, enc.pad_id))
    assert shared.shape == ref.shape == (3 * k,)
    rel = ((shared - ref).abs() / ref.abs().clamp_min(1e-3)).max().item()
    assert rel <= 1e-4, rel


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2"])
def test_shared_loss_and_gradients_equal_separate(tiny_dirs, images, arch):
    model, enc = model_and_encoder(tiny_dirs, arch)
    encoded = [enc.encode(s) for s in make_samples(images, arch != "qwen2", 2)]

    def loss_and_grad(rewards_fn):
        model.zero_grad()
        r = rewards_fn()
        loss = bradley_terry(r[0::2], r[1::2])
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    ref_loss, ref_grad = loss_and_grad(lambda: separate_rewards(model, encoded, enc.pad_id))
    loss, grad = loss_and_grad(lambda: model(collate_shared(encoded, enc.pad_id)))
    assert abs(loss - ref_loss) <= 1e-5
    cos = torch.nn.functional.cosine_similarity(grad, ref_grad, dim=0).item()
    assert cos >= 0.99999, cos
    assert ((grad - ref_grad).abs().max() / ref_grad.abs().max()).item() <= 1e-3


def test_negative_control_plain_causal_mask_fails(tiny_dirs, images):
    """The same packed row with a plain causal mask lets the rejected response see the chosen one: the check
    above must then fail, or it proves nothing."""
    model, enc = model_and_encoder(tiny_dirs, "qwen2_5_vl")
    model.eval()
    encoded = [enc.encode(s) for s in make_samples(images, True, 2)]
    batch = collate_shared(encoded, enc.pad_id)
    length = batch.input_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    batch.attention_mask = (causal[None] & (batch.valid_mask[:, None, :] > 0))[:, None] | torch.eye(
        length, dtype=torch.bool
    )
    with torch.no_grad():
        ref = separate_rewards(model, encoded, enc.pad_id)
        wrong = model(batch)
    rel = (wrong - ref).abs() / ref.abs().clamp_min(1e-3)
    assert rel[0::2].max() <= 1e-4  # the first response sees only the prompt either way
    assert rel[1::2].max() > 1e-3  # the second one now attends the first


def test_brute_force_no_response_attends_another(tiny_dirs, images):
    """Mask check on every (query, key) and a perturbation check: changing response 1 never moves response 2's
    reward; changing the prompt moves both."""
    segments = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 3, -1, -1]])
    mask = shared_attention_mask(segments)[0, 0]
    for q in range(segments.shape[1]):
        for k in range(segments.shape[1]):
            sq, sk = segments[0, q].item(), segments[0, k].item()
            expected = (k <= q and sk >= 0 and (sk == 0 or sk == sq)) or (sq < 0 and k == q)
            assert mask[q, k].item() == expected, (q, k)

    model, enc = model_and_encoder(tiny_dirs, "qwen2_5_vl")
    model.eval()
    base = Sample(
        [{"role": "user", "content": "<image>\nWhat?"}],
        ["First answer.", "Second.", "Third one"],
        [images["square"]],
    )
    changed = Sample(base.prompt, ["Totally different first answer!", "Second.", "Third one"], base.images)
    with torch.no_grad():
        r0 = model(collate_shared([enc.encode(base)], enc.pad_id))
        r1 = model(collate_shared([enc.encode(changed)], enc.pad_id))
    assert r0[0] != r1[0]
    assert torch.allclose(r0[1:], r1[1:], atol=1e-6)


def test_shared_positions_equal_unshared_positions(tiny_dirs, images):
    """Position ids of the shared row equal those of [P|C] and [P|R] at the corresponding tokens (3-D mRoPE)."""
    model, enc = model_and_encoder(tiny_dirs, "qwen2_5_vl")
    e = enc.encode(make_samples(images, True, 2)[1])
    shared = collate_shared([e], enc.pad_id)
    pos = model.shared_position_ids(shared)
    p_len = len(e.prompt.input_ids)
    start = p_len
    for resp in e.responses:
        alone = collate_shared([EncodedSample(e.prompt, [resp])], enc.pad_id)
        ref = model.shared_position_ids(alone)
        assert torch.equal(pos[:, 0, :p_len], ref[:, 0, :p_len])
        assert torch.equal(pos[:, 0, start : start + len(resp)], ref[:, 0, p_len : p_len + len(resp)])
        start += len(resp)


def test_scoring_path_defaults_to_shared_and_matches_padded(tiny_dirs, images):
    from basereward.scoring import RewardScorer

    model, enc = model_and_encoder(tiny_dirs, "qwen2_5_vl")
    model.eval()
    samples = make_samples(images, True, 8)
    shared = RewardScorer(model, enc.processor)
    padded = RewardScorer(model, enc.processor, layout="padded")
    assert shared.layout == "shared"
    a, b = torch.tensor(shared(samples)), torch.tensor(padded(samples))
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    group = shared.score_group(samples[0].prompt, samples[0].responses, samples[0].images)
    assert torch.allclose(torch.tensor(group), a[0], atol=1e-6)


def test_score_pairs_honours_the_padded_layout(tiny_dirs, images):
    """Pair scoring runs in the scorer's layout: a padded scorer sends one row per response (no position shift),
    a shared one one row per pair, and both give the rewards of each response scored alone."""
    from basereward.scoring import RewardScorer, score_pairs
    from basereward.types import PreferencePair

    model, enc = model_and_encoder(tiny_dirs, "qwen2_5_vl")
    model.eval()
    pairs = [
        PreferencePair(s.id, s.prompt, s.responses[0], s.responses[1], images=s.images)
        for s in make_samples(images, True, 2) * 2
    ]
    seen: list = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        shared = score_pairs(RewardScorer(model, encoder=enc, batch_size=4), pairs)
        shared_batches, seen[:] = list(seen), []
        padded = score_pairs(RewardScorer(model, encoder=enc, batch_size=4, layout="padded"), pairs)
    finally:
        hook.remove()
    # 6 pairs, each twice: merged by prompt into 3 samples of 2 responses (scoring.merge_pairs); 4 rows per
    # forward, a sample never split: padded 4 + 2 rows, shared one row per sample, 2 samples per forward
    assert [b.input_ids.shape[0] for b in seen] == [4, 2]
    assert all(b.position_shift is None for b in seen)
    assert [b.input_ids.shape[0] for b in shared_batches] == [2, 1]
    assert all(b.position_shift is not None for b in shared_batches)
    with torch.no_grad():
        alone = separate_rewards(model, [enc.encode(p.as_sample()) for p in pairs], enc.pad_id)
    for got in (shared, padded):
        flat = torch.tensor([r for pair in got for r in pair])
        assert torch.allclose(flat, alone, rtol=1e-4, atol=1e-5)
