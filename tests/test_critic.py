"""The critic-based reward model (`paradigm: critic`): the critique exchange by example, the training loss equal to
an unpacked recomputation (Bradley-Terry on the head + the LM's own cross-entropy of the critique tokens), one step
moving exactly the parameters it should, greedy batched generation equal to a hand-written greedy loop, the critique
generated then scored through the scoring path, save -> load_scorer, eval on the three multimodal benchmarks, score
and serve from the command line. Tiny test-size Qwen2.5-VL, CPU."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from test_eval_benchmarks import write_mmrb, write_mmrlhf, write_vlrb_hf_json

from basereward.cli import main as cli_main
from basereward.collate import collate_padded, left_padded
from basereward.config import CriticArgs, DataArgs, ModelArgs, OptimArgs, TrainConfig
from basereward.critic_train import CriticSteps, critic_sums
from basereward.data.io import read_pairs, write_pairs
from basereward.data.synthetic import synthesize
from basereward.model.critic import REQUEST, CriticFormat, CriticModel
from basereward.model.critic_scorer import CriticScorer
from basereward.model.processor import load_processor
from basereward.scoring import load_scorer, merge_pairs, score_encoded, score_pairs
from basereward.template import EncodedSample, Encoder, PromptEncoding
from basereward.train import main as train_main
from basereward.types import DataError, Sample


@pytest.fixture(scope="module")
def backbone(tiny_dirs):
    return tiny_dirs["qwen2_5_vl"]


@pytest.fixture(scope="module")
def processor(backbone):
    return load_processor(backbone, "qwen2_5_vl")


@pytest.fixture(scope="module")
def encoder(processor):
    return Encoder(processor, "qwen2_5_vl")


@pytest.fixture(scope="module")
def model(backbone):
    return CriticModel.from_backbone(backbone, seed=1, max_critique_tokens=6).eval()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Image pairs (colour, shape) and text pairs, all with critiques (`data synth` writes them)."""
    d = tmp_path_factory.mktemp("critic-data")
    synthesize(d, pairs=48, eval_pairs=8, seed=3, text_share=0.25, kinds=("colour", "shape"))
    return d


TEXT = Sample([{"role": "user", "content": "What is 2 + 3?"}], ["5", "It is 6."], id="q")


def test_the_critique_exchange_by_example(processor, encoder):
    fmt = CriticFormat(encoder)
    enc = encoder.encode(TEXT)
    example, lengths = fmt.example(enc, ["Right: 2 + 3 is 5.", None])
    tok = processor.tokenizer
    ask = f"<|im_end|>\n<|im_start|>user\n{REQUEST}<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(example.responses[0]) == f"5{ask}Right: 2 + 3 is 5.<|im_end|>"
    assert tok.decode(example.responses[1]) == f"It is 6.{ask}<|im_end|>"  # no critique: an empty one
    assert lengths == [len(encoder.response("Right: 2 + 3 is 5.")), 0]
    assert example.prompt is enc.prompt  # the prompt (and its images) is the naive model's, shared


def test_loss_is_bradley_terry_plus_the_lms_cross_entropy_of_the_critique(model, encoder, data):
    """Against an unpacked recomputation: each response a row of its own through the plain transformers model
    (labels -100 except the critique tokens), the head at the last token, BT by hand."""
    pairs = read_pairs(data / "train.jsonl")[:3]
    pairs[1].rejected_critique = None  # a response without a critique adds no cross-entropy
    steps = CriticSteps(pairs, encoder, 3, 3, 0, None, 1, critic=CriticFormat(encoder), layout="shared")
    ((cb, margins),), _ = steps[0]
    order = steps.indices(0)
    cfg = TrainConfig(paradigm="critic", critic=CriticArgs(sft_weight=0.5))
    with torch.no_grad():
        out = model(cb)
        loss, row, parts = critic_sums(out, cb, margins, cfg)
    rewards, ces = [], []
    fmt = CriticFormat(encoder)
    for i in order:
        p = pairs[i]
        enc, lengths = fmt.example(encoder.encode(p.as_sample()), [p.chosen_critique, p.rejected_critique])
        for resp, n in zip(enc.responses, lengths):
            b = collate_padded([EncodedSample(enc.prompt, [resp])], encoder.pad_id)
            labels = torch.full_like(b.input_ids, -100)
            if n:
                labels[0, -n:] = b.input_ids[0, -n:]
            with torch.no_grad():
                o = model.lm(**b.model_inputs(), labels=labels if n else None, output_hidden_states=True)
                rewards.append(model.head(o.hidden_states[-1][0, -1]).item())
            ces.append(o.loss.item() if n else None)
    assert out[:, 0].tolist() == pytest.approx(rewards, abs=1e-4)
    assert [c for c in out[:, 1].tolist()] == pytest.approx([c or 0.0 for c in ces], abs=1e-4)
    r = torch.tensor(rewards)
    bt = -F.logsigmoid(r[0::2] - r[1::2]).mean().item()
    sft = sum(c for c in ces if c is not None) / sum(c is not None for c in ces)
    assert ces.count(None) == 1 and parts["loss_critique"] == pytest.approx(sft, abs=1e-4)
    assert loss.item() == pytest.approx(bt + 0.5 * sft, abs=1e-4)
    assert row[0] == pytest.approx(bt * 3, abs=1e-4) and row[3] == 3


def config(out, backbone, data, **kw):
    base = dict(
        output_dir=str(out),
        seed=0,
        paradigm="critic",
        critic=CriticArgs(max_critique_tokens=6),
        model=ModelArgs(backbone=str(backbone)),
        data=DataArgs(train=str(data / "train.jsonl"), validation=str(data / "validation.jsonl")),
        optim=OptimArgs(lr=2e-3, warmup_steps=1, weight_decay=0.0),
        batch_size=8,
        micro_batch_size=4,
        max_steps=1,
        log_every=1,
        progress=False,
        tensorboard=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_one_step_moves_the_lm_and_head_not_the_frozen_vision(backbone, data, tmp_path):
    res = train_main(config(tmp_path / "run", backbone, data, freeze_vision=True))
    final = Path(res["model_dir"])
    before, after = (
        load_file(str(backbone / "model.safetensors")),
        load_file(str(final / "model.safetensors")),
    )
    assert set(before) == set(after) and "lm_head.weight" in after  # a whole generation model
    frozen = [k for k in before if k.startswith("visual.") and not k.startswith("visual.merger.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    moved = [k for k in before if k not in frozen and not torch.equal(before[k], after[k])]
    assert sorted(moved) == sorted(k for k in before if k not in frozen)
    head0 = CriticModel.from_backbone(backbone, seed=0).head.state_dict()  # the run's seeded initial head
    head1 = load_file(str(final / "head.safetensors"))
    assert set(head0) == set(head1) and all(not torch.equal(head0[k], head1[k]) for k in head0)
    meta = json.loads((final / "basereward.json").read_text())
    assert meta["paradigm"] == "critic" and meta["critic"] == {"max_critique_tokens": 6, "request": REQUEST}
    assert meta["reward_stats"]["split"] == "validation"
    v = res["validation"]["critic"]  # validation generated every response's critique, and counts them
    assert v["critiques"] == 2 * res["validation"]["n"] == 16 and v["generated_tokens"] <= 16 * 6
    logged = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "loss_critique" in logged[0] and "loss_bt" in logged[0]


def test_without_critique_weight_the_lm_head_does_not_move(backbone, data, tmp_path):
    """sft_weight 0: only Bradley-Terry on the head, which never reads the LM head's output."""
    res = train_main(config(tmp_path / "run", backbone, data, critic=CriticArgs(0.0, 4)))
    before, after = (
        load_file(str(backbone / "model.safetensors")),
        load_file(res["model_dir"] + "/model.safetensors"),
    )
    assert torch.equal(before["lm_head.weight"], after["lm_head.weight"])
    assert not torch.equal(before["model.norm.weight"], after["model.norm.weight"])


def test_resume_is_exact(backbone, data, tmp_path):
    kw = dict(max_steps=4, save_every=2, keep_checkpoints=5)
    train_main(config(tmp_path / "full", backbone, data, **kw))
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    step2 = tmp_path / "full" / "checkpoints" / "step-000002"
    shutil.copytree(step2, resumed / "checkpoints" / "step-000002")
    assert train_main(config(resumed, backbone, data, resume="auto", **kw))["steps"] == 4
    for name in ("model.safetensors", "head.safetensors"):
        a, b = load_file(str(tmp_path / "full" / "final" / name)), load_file(str(resumed / "final" / name))
        assert all(torch.equal(a[k], b[k]) for k in a)


def greedy_by_hand(model, enc: EncodedSample, ask: list[int], steps: int, end: int) -> list[int]:
    """Greedy decoding without a cache: the whole sequence through the model for every new token."""
    ids = list(enc.responses[0]) + ask
    new = []
    for _ in range(steps):
        b = collate_padded([EncodedSample(enc.prompt, [ids + new])], 0)
        with torch.no_grad():
            logits = model.lm(**b.model_inputs()).logits[0, -1]
        new.append(int(logits.argmax()))
        if new[-1] == end:
            break
    return new


def test_generation_is_greedy_bounded_batched_then_scored_through_the_scoring_path(model, processor, data):
    pairs = read_pairs(data / "test.jsonl")
    three = Sample(
        pairs[0].prompt, [pairs[0].chosen, pairs[0].rejected, "It is a big square."], pairs[0].images
    )
    samples = [three, TEXT, pairs[1].as_sample()]  # images of two sizes and none: rows of unequal length
    scorer = CriticScorer(model, processor, batch_size=4)
    rewards = scorer(samples)
    assert [len(r) for r in rewards] == [3, 2, 2]
    stats = scorer.critic_stats()
    assert stats["critiques"] == 7 and stats["generated_tokens"] <= 7 * 6 and stats["generate_calls"] == 2
    encoded = [scorer.encode(s) for s in samples]
    batched = scorer.generate(encoded)  # left-padded rows of 4
    fmt, end = scorer.format, scorer.encoder.end_id
    for e, critiques in zip(encoded, batched):
        for resp, got in zip(e.responses, critiques):
            one = EncodedSample(e.prompt, [resp])
            assert got == greedy_by_hand(model, one, fmt.ask_ids, 6, end)  # and <= 6 tokens
    # the rewards are the head's on [prompt | response | request | critique <|im_end|>], any layout
    scored = [
        EncodedSample(e.prompt, [fmt.scored(r, c) for r, c in zip(e.responses, cs)])
        for e, cs in zip(encoded, batched)
    ]
    padded = score_encoded(model, scored, scorer.encoder.pad_id, layout="padded")
    assert all(a == pytest.approx(b, abs=1e-4) for a, b in zip(rewards, padded))
    texts = scorer.critiques([TEXT])
    assert texts == [[processor.tokenizer.decode(c, skip_special_tokens=True) for c in batched[1]]]


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2"])
def test_the_other_architectures_generate_and_score_alike(tiny_dirs, arch):
    """Qwen2-VL and a text LM: left-padded batched generation equals the hand-written greedy loop row by row."""
    model = CriticModel.from_backbone(tiny_dirs[arch], max_critique_tokens=4).eval()
    scorer = CriticScorer(model, load_processor(tiny_dirs[arch], arch), batch_size=4)
    samples = [
        TEXT,
        Sample([{"role": "user", "content": "Name a colour, please."}], ["Red.", "I would say blue."]),
    ]
    encoded = [scorer.encode(s) for s in samples]
    for e, critiques in zip(encoded, scorer.generate(encoded)):
        for resp, got in zip(e.responses, critiques):
            assert got == greedy_by_hand(
                model, EncodedSample(e.prompt, [resp]), scorer.format.ask_ids, 4, scorer.encoder.end_id
            )
    assert [len(r) for r in scorer(samples)] == [2, 2]


def test_left_padding_moves_the_tokens_by_example():
    b = collate_padded([EncodedSample(PromptEncoding([5, 6], [0, 0]), [[7, 2], [8, 9, 2]])], 0)
    left = left_padded(b)
    assert left.input_ids.tolist() == [[0, 5, 6, 7, 2], [5, 6, 8, 9, 2]]
    assert left.attention_mask.tolist() == [[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert left.mm_token_type_ids.tolist() == [[0] * 5] * 2 and left.score_cols.tolist() == [4, 4]


@pytest.fixture(scope="module")
def critic_dir(model, processor, tmp_path_factory):
    d = tmp_path_factory.mktemp("critic") / "final"
    model.reward_stats = {"mean": 0.1, "std": 2.0, "n": 8, "split": "validation"}
    model.save(d, processor)
    return d


def test_save_then_load_scorer_gives_the_same_rewards(model, processor, critic_dir, data):
    pairs = read_pairs(data / "test.jsonl")
    loaded = load_scorer(critic_dir, device="cpu", progress=False)
    assert isinstance(loaded, CriticScorer) and loaded.max_critique_tokens == 6
    a = score_pairs(loaded, pairs)
    b = score_pairs(CriticScorer(model, processor), pairs)
    assert a == [pytest.approx(x, abs=1e-5) for x in b]
    assert loaded.normalize(2.1) == pytest.approx(1.0)  # the recorded validation mean/std
    from basereward.model.reward_model import load_reward_model

    with pytest.raises(DataError, match="'critic' reward model, not a naive one"):
        load_reward_model(critic_dir)


def test_a_broken_critic_checkpoint_names_the_field(critic_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(critic_dir, bad)
    meta = json.loads((bad / "basereward.json").read_text())
    meta["critic"] = {"max_critique_tokens": 0}
    (bad / "basereward.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="field critic must be an object with max_critique_tokens >= 1"):
        load_scorer(bad, device="cpu")
    del meta["critic"], meta["head"]
    meta["critic"] = {"max_critique_tokens": 4}
    (bad / "basereward.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="field head must be an object"):
        load_scorer(bad, device="cpu")
    shutil.copy(critic_dir / "basereward.json", bad / "basereward.json")
    (bad / "head.safetensors").write_bytes(
        b"not a safetensors file"
    )  # e.g. a pickle renamed: never unpickled
    with pytest.raises(DataError, match="head.safetensors: not a readable safetensors file"):
        load_scorer(bad, device="cpu")


def test_config_takes_critic_fields_and_refuses_what_it_has_not(tmp_path):
    from basereward.config import ConfigError, load_config

    required = ["model.backbone=b", "data.train=t.jsonl", "paradigm=critic"]
    cfg = load_config(None, [*required, "critic.sft_weight=0.3", "critic.max_critique_tokens=32"])
    assert cfg.critic == CriticArgs(0.3, 32)
    assert (
        load_config(None, [*required, "model.head.layers=3", "loss.center_coef=0.01"]).model.head.layers == 3
    )
    for bad, message in [
        (["critic.max_critique_tokens=0"], "critic.max_critique_tokens must be >= 1"),
        (["critic.sft_weight=-1"], "critic.sft_weight must be >= 0"),
        (["lora.rank=8"], "paradigm critic does not take lora.rank"),
        (["distributed.strategy=fsdp"], "paradigm critic does not take distributed.strategy"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, [*required, *bad])


@pytest.fixture(scope="module")
def generative_dir(backbone, processor, tmp_path_factory):
    from basereward.model.generative import GenerativeModel

    d = tmp_path_factory.mktemp("generative") / "final"
    GenerativeModel.from_backbone(backbone, "seed").save(d, processor)
    return d


@pytest.mark.parametrize("paradigm", ["critic", "generative"])
@pytest.mark.parametrize(
    "benchmark,writer",
    [
        ("vl-rewardbench", write_vlrb_hf_json),
        ("multimodal-rewardbench", write_mmrb),
        ("mm-rlhf-rewardbench", write_mmrlhf),
    ],
)
def test_eval_takes_critic_and_generative_dirs_on_the_three_benchmarks(
    request, paradigm, benchmark, writer, tmp_path, capsys
):
    """The benchmarks' own fixtures (images written, mm-rlhf with a video row as frames) through `basereward eval
    --model DIR`; the accuracy is the one `score_pairs` gives with the same scorer."""
    from basereward.data.benchmarks import load_benchmark

    model_dir = request.getfixturevalue(f"{paradigm}_dir")
    path = writer(tmp_path / "data")
    args = ["eval", "--benchmark", benchmark, "--data", str(path), "--model", str(model_dir)]
    assert cli_main([*args, "--out", str(tmp_path / "ev")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    pairs = load_benchmark(benchmark, path)
    rewards = score_pairs(load_scorer(model_dir, device="cpu", progress=False), pairs)
    # VL-RewardBench counts a repeated pair once (its official key: id, query, responses)
    unique = {p.meta.get("pair_key", k): c > r for k, (p, (c, r)) in enumerate(zip(pairs, rewards))}
    headline = {
        "vl-rewardbench": "overall",
        "multimodal-rewardbench": "overall",
        "mm-rlhf-rewardbench": "acc",
    }
    assert result["scorer"] == "model" and len(unique) > 0
    assert result[headline[benchmark]] == pytest.approx(100.0 * sum(unique.values()) / len(unique))
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    if paradigm == "critic":  # one critique per distinct response of each prompt (pairs merged by prompt)
        responses = sum(len(x.responses) for x in merge_pairs(pairs)[0])
        assert metrics["critic"]["critiques"] == responses and result["critic"] == metrics["critic"]
    if paradigm == "generative":
        assert metrics["judge"]["judge_calls"] >= 2 * len({p.as_sample().prompt_key() for p in pairs})


def test_score_and_serve_give_the_same_rewards(critic_dir, data, tmp_path):
    from fastapi.testclient import TestClient

    from basereward.serve.cli import ServeConfig, build_app

    test = data / "test.jsonl"
    out = tmp_path / "scores.jsonl"
    assert cli_main(["score", "--model", str(critic_dir), "--input", str(test), "--output", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    pairs = [p for p in read_pairs(test) if not p.images][:2]
    assert pairs, "the synthetic test split has text pairs"
    # the scores file carries the critiques the model wrote, as CriticScorer.critiques gives them
    written = {x["id"]: [x["critique_chosen"], x["critique_rejected"]] for x in lines}
    scorer = load_scorer(critic_dir, device="cpu", progress=False)
    assert [written[p.id] for p in pairs] == scorer.critiques([p.as_sample() for p in pairs])
    samples = [
        {"messages": [*p.prompt, {"role": "assistant", "content": text}]}
        for p in pairs
        for text in (p.chosen, p.rejected)
    ]
    with TestClient(build_app(ServeConfig(model=str(critic_dir), device="cpu"))) as client:
        r = client.post("/v1/reward", json={"samples": samples})
        assert r.status_code == 200, r.text
        raw = [x["raw"] for x in r.json()["results"]]
    by_id = {x["id"]: (x["reward_chosen"], x["reward_rejected"]) for x in lines}
    expected = [v for p in pairs for v in by_id[p.id]]
    assert raw == [pytest.approx(v, abs=1e-4) for v in expected]


def test_the_rl_reward_function_scores_with_a_critic(critic_dir, data):
    """TRL's reward function over a critic checkpoint: a completion matching the answer gets 1, the others
    sigmoid(raw), raw being what the scorer gives the same sample (critique generated, then scored)."""
    from basereward.rl.rewards import sigmoid
    from basereward.rl.trl import make_reward_fn

    pair = next(p for p in read_pairs(data / "test.jsonl") if p.images)
    image = pair.images[0].load()
    prompt = [{"role": "user", "content": pair.prompt[0]["content"].replace("<image>", "").strip()}]
    fn = make_reward_fn(str(critic_dir), device="cpu")
    out = fn(
        [prompt] * 2, [pair.chosen, pair.rejected], images=[[image], [image]], solution=[pair.chosen] * 2
    )
    samples = fn.samples([prompt] * 2, [pair.chosen, pair.rejected], images=[[image], [image]])
    raw = fn.scorer(samples[1:])[0][0]
    assert isinstance(fn.scorer, CriticScorer) and fn.scorer.critic_stats()["critiques"] >= 2
    assert out[0] == 1.0 and out[1] == pytest.approx(sigmoid(raw), abs=1e-5)


def test_training_without_any_critique_warns(backbone, data, tmp_path, capsys):
    from basereward.critic_train import critique_share

    pairs = read_pairs(data / "train.jsonl")
    pairs[0].chosen_critique = None
    assert critique_share(pairs[:2]) == 0.75 and critique_share(pairs) == (2 * len(pairs) - 1) / (
        2 * len(pairs)
    )
    for p in pairs:
        p.chosen_critique = p.rejected_critique = None
    write_pairs(tmp_path / "train.jsonl", pairs)
    shutil.copytree(data / "images", tmp_path / "images")
    shutil.copy(data / "validation.jsonl", tmp_path / "validation.jsonl")
    capsys.readouterr()
    train_main(config(tmp_path / "run", backbone, tmp_path))
    err = capsys.readouterr().err
    assert "no pair among the first 1,000" in err and str(tmp_path / "train.jsonl") in err
