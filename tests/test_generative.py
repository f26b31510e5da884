"""The generative reward model (`paradigm: generative`): the judge prompt of both formats by example, the answer-token
label mask by hand, the loss equal to the LM's own cross-entropy, the seeded and recorded order randomisation,
both-order inference and the tie rule and R1-Reward's K-response rule on hand numbers (a stand-in judge with set
probabilities), save -> load_scorer, eval and score from the command line, and training through train.py (the
right parameters move, resume is exact, the loss goes down). Tiny test-size Qwen2.5-VL, CPU."""

import dataclasses
import json
import math
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file

from basereward.cli import main as cli_main
from basereward.collate import COLLATORS, collate_shared
from basereward.config import DataArgs, GenerativeArgs, ModelArgs, OptimArgs, TrainConfig
from basereward.data.io import read_pairs, write_pairs
from basereward.data.synthetic import synthesize
from basereward.generative_train import JudgeSteps
from basereward.model.generative import (
    INSTRUCTION,
    GenerativeModel,
    JudgeBatch,
    JudgeFormat,
    answer_labels,
    chosen_position,
    collate_judges,
    paradigm_of,
)
from basereward.model.generative_scorer import GenerativeScorer, judge_pair, r1_rewards
from basereward.model.processor import load_processor
from basereward.scoring import compare, load_scorer, score_pairs
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
def model(backbone):
    return GenerativeModel.from_backbone(backbone, "seed").eval()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Image pairs (colour) and text pairs, each prompt once, so a pair is one sample of two responses."""
    d = tmp_path_factory.mktemp("gen-data")
    synthesize(d, pairs=64, eval_pairs=12, seed=3, text_share=0.0, kinds=("colour", "shape"))
    return d


def judge_format(processor, fmt):
    return JudgeFormat(Encoder(processor, "qwen2_5_vl"), fmt)


TEXT = Sample([{"role": "user", "content": "What is 2 + 3?"}], ["5", "6"], id="q")
HEAD = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
TAIL = "<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("fmt", ["seed", "r1"])
def test_judge_prompt_by_example(processor, fmt):
    judge = judge_format(processor, fmt)
    tok = processor.tokenizer
    enc = judge.encode(TEXT)
    example, n_answer, verdict_at = judge.example(enc, chosen_at=2, reasoning="Five is the sum.")
    ids = enc.prompt.input_ids + example.responses[0]
    question = {
        "seed": 'Which response is better? Answer with "1" or "2" only.',
        "r1": "Which response is better? Think inside <think></think>, then answer 1 or 2 inside <answer></answer>.",
    }[fmt]
    user = f"{INSTRUCTION}\n\n[Query]\nWhat is 2 + 3?\n\n[Response 1]\n6\n\n[Response 2]\n5\n\n{question}"
    answer = {"seed": "2", "r1": "<think>Five is the sum.</think><answer>2</answer><|im_end|>"}[fmt]
    assert (
        tok.decode(ids) == HEAD + user + TAIL + answer
    )  # the chosen "5" shown second, so the verdict is "2"
    # the prompt part is exactly what the chat template renders for that user turn (the one template path)
    rendered = processor.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True)
    assert tok.decode(ids[: len(ids) - n_answer]) == rendered
    assert tok.decode(ids[len(ids) - n_answer :]) == answer
    assert tok.decode([ids[len(ids) - n_answer + verdict_at]]) == "2"
    # at inference the call stops where the verdict comes; r1 forces an empty think block first
    call = judge.call(enc.prompt, *enc.responses)
    forced = {"seed": "", "r1": "<think></think><answer>"}[fmt]
    assert tok.decode(enc.prompt.input_ids + call).endswith("[Response 2]\n6\n\n" + question + TAIL + forced)


def test_judge_prompt_keeps_the_images_of_the_one_preprocessing_path(processor, data):
    pair = read_pairs(data / "train.jsonl")[0]
    assert pair.images
    encoder = Encoder(processor, "qwen2_5_vl")
    plain = encoder.encode(pair.as_sample()).prompt
    judged = judge_format(processor, "seed").encode(pair.as_sample()).prompt
    assert torch.equal(judged.pixel_values, plain.pixel_values)
    assert torch.equal(judged.image_grid_thw, plain.image_grid_thw)
    assert judged.mm_token_type_ids.count(1) == plain.mm_token_type_ids.count(1) > 0
    assert len(judged.mm_token_type_ids) == len(judged.input_ids)


def test_answer_label_mask_by_hand(processor):
    """Only answer tokens carry a label: the last `answer length` tokens of each judge call."""
    judge = judge_format(processor, "seed")  # pad id 0 in the tiny tokenizer
    a = EncodedSample(PromptEncoding([5, 6]), [[7, 8, 9]])  # answer = [8, 9]
    b = EncodedSample(PromptEncoding([5]), [[4, 3]])  # answer = [3]
    for layout in ("padded", "shared"):
        jb = collate_judges([(a, 2, 0, 0), (b, 1, 0, 1)], judge, COLLATORS[layout])
        assert jb.batch.input_ids.tolist() == [[5, 6, 7, 8, 9], [5, 4, 3, 0, 0]]
        assert answer_labels(jb).tolist() == [[-100, -100, -100, 8, 9], [-100, -100, 3, -100, -100]]
    # two judge calls side by side after one prompt (the shared layout of inference)
    two = collate_shared([EncodedSample(PromptEncoding([5, 6]), [[7, 8], [9, 4, 3]])], 0)
    jb = JudgeBatch(
        two, torch.tensor([1, 2]), torch.tensor([0, 0]), torch.tensor([0, 0]), torch.tensor([1, 2])
    )
    assert answer_labels(jb).tolist() == [[-100, -100, -100, 8, -100, 4, 3]]


def test_loss_is_the_lm_cross_entropy_of_the_answer_tokens_only(processor, backbone, data):
    """The model's per-pair loss equals transformers' own loss with our labels, and its margin the verdict logits."""
    model = GenerativeModel.from_backbone(backbone, "r1").eval()
    judge = judge_format(processor, "r1")
    pairs = read_pairs(data / "train.jsonl")[:2]
    examples = []
    for pair, at, why in zip(pairs, (1, 2), ("", "The colour is plain to see.")):
        enc, n, v = judge.example(judge.encode(pair.as_sample()), at, why)
        examples.append((enc, n, v, at - 1))
    jb = collate_judges(examples, judge, COLLATORS["padded"])
    with torch.no_grad():
        out = model(jb)
        logits = model.lm(**jb.batch.model_inputs()).logits
        shared = model(collate_judges(examples, judge, COLLATORS["shared"]))
    labels = answer_labels(jb)
    for i, (_, n, v, target) in enumerate(examples):
        ce = torch.nn.functional.cross_entropy(logits[i, :-1], labels[i, 1:], ignore_index=-100)
        assert out[i, 0].item() == pytest.approx(ce.item(), abs=1e-4)
        assert int((labels[i] != -100).sum()) == n  # the prompt and responses are not supervised
        col = int(jb.batch.score_cols[i]) - n + v  # predicts the verdict token
        right, wrong = (
            logits[i, col, judge.verdict_ids[target]],
            logits[i, col, judge.verdict_ids[1 - target]],
        )
        assert out[i, 1].item() == pytest.approx((right - wrong).item(), abs=1e-4)
    assert torch.allclose(out, shared, atol=1e-4)  # the layouts agree


def test_order_randomisation_is_seeded_and_balanced():
    ids = [f"pair-{i}" for i in range(2000)]
    first = [chosen_position(0, i) for i in ids]
    assert first == [chosen_position(0, i) for i in ids]  # same seed, same swaps
    other = [chosen_position(1, i) for i in ids]
    assert 0.4 < sum(a != b for a, b in zip(first, other)) / len(ids) < 0.6  # another seed: independent coins
    for coins in (first, other):
        assert set(coins) == {1, 2}
        assert 0.46 < coins.count(1) / len(coins) < 0.54  # balanced (binomial sd 0.011)


def test_training_steps_follow_the_seeded_order(processor, data):
    pairs = read_pairs(data / "train.jsonl")
    encoder = Encoder(processor, "qwen2_5_vl")
    steps = JudgeSteps(
        pairs, encoder, 8, 8, 0, None, 1, judge=JudgeFormat(encoder, "seed"), order_seed=7, layout="padded"
    )
    ((jb, _),), dropped = steps[0]
    idx = steps.indices(0)
    at = [chosen_position(7, pairs[i].id) for i in idx]
    assert jb.target.tolist() == [a - 1 for a in at] and sum(dropped.values()) == 0
    tok = processor.tokenizer
    for row, i, a in zip(jb.batch.input_ids.tolist(), idx, at):
        text = tok.decode([t for t in row if t != encoder.pad_id])
        assert f"[Response {a}]\n{pairs[i].chosen}\n" in text and text.endswith(TAIL + str(a))


def test_judge_pair_and_the_r1_rule_by_hand():
    assert judge_pair(0.8, 0.3) == (0, pytest.approx(0.75))  # both orders: the first is better
    assert judge_pair(0.2, 0.9) == (1, pytest.approx(0.15))
    assert judge_pair(0.8, 0.6) == (None, 0.5)  # the orders disagree: a tie
    assert judge_pair(0.5, 0.1) == (None, 0.5)  # an undecided order is no vote
    assert judge_pair(0.7) == (0, 0.7)  # one order only
    probs = {(0, 1): 0.9, (1, 0): 0.2, (0, 2): 0.7, (2, 0): 0.6, (1, 2): 0.3, (2, 1): 0.8}
    # 0 beats 1 (0.9, 0.8); 0 vs 2 disagree (0.7, 0.4): half each; 2 beats 1 (P(1 better) 0.3, 0.2)
    assert r1_rewards(3, probs) == ([1.5, 0.0, 1.5], 2, 1)


class StandIn(torch.nn.Module):
    """A judge with set probabilities: P("1") looked up by the two responses the call shows, read back from the
    call's own tokens (so the order the scorer builds is what is checked)."""

    def __init__(self, tokenizer, table):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.tokenizer, self.table, self.seen = tokenizer, table, []
        self.model_type, self.pool_token, self.format = "qwen2_5_vl", "<|im_end|>", "seed"

    def verdict_logits(self, batch, choices):
        out = []
        for row, col in zip(batch.score_rows.tolist(), batch.score_cols.tolist()):
            text = self.tokenizer.decode(batch.input_ids[row, : col + 1])
            shown = re.findall(r"\[Response 1\]\n(.*?)\n\n\[Response 2\]\n(.*?)\n\n", text)[-1]
            self.seen.append(shown)
            p = self.table[shown]
            out.append([math.log(p), math.log(1 - p)])
        return torch.tensor(out)


def test_both_order_inference_ties_and_the_k3_rule_on_a_stand_in(processor):
    table = {
        ("a", "b"): 0.9,
        ("b", "a"): 0.2,
        ("a", "c"): 0.7,
        ("c", "a"): 0.6,
        ("b", "c"): 0.3,
        ("c", "b"): 0.8,
    }
    stand_in = StandIn(processor.tokenizer, table)
    scorer = GenerativeScorer(stand_in, processor, layout="padded", batch_size=4)
    sample = Sample([{"role": "user", "content": "Pick one."}], ["a", "b", "c"])
    assert scorer([sample]) == [[1.5, 0.0, 1.5]]  # the hand case of test_judge_pair_and_the_r1_rule_by_hand
    assert sorted(stand_in.seen) == sorted(table)  # every ordered pair judged once: K(K - 1) = 6 calls
    assert scorer.judge_stats() == {
        "judge_calls": 6,
        "pairs_judged": 3,
        "orders_agreed": 2,
        "order_ties": 1,
        "generated_tokens": 0,  # seed reads the verdict at once
        "order_agreement": pytest.approx(2 / 3),
        "both_orders": True,
    }
    pair = Sample(sample.prompt, ["a", "b"])
    assert scorer.compare(pair) == (0, pytest.approx(0.85))  # mean of 0.9 and 1 - 0.2
    assert compare(scorer, Sample(sample.prompt, ["b", "a"])) == (1, pytest.approx(0.15))  # scoring's compare
    assert compare(scorer, Sample(sample.prompt, ["a", "c"])) == (0, 0.5)  # the orders disagree: a tie
    one = GenerativeScorer(stand_in, processor, layout="padded", both_orders=False)
    assert (
        one([sample]) == [[2.0, 0.0, 1.0]] and one.judge_stats()["judge_calls"] == 3
    )  # (0,1), (0,2), (1,2) only


def test_real_model_shapes_layouts_and_call_count(model, processor, data):
    pair = read_pairs(data / "test.jsonl")[0]
    three = Sample(pair.prompt, [pair.chosen, pair.rejected, "It is a square."], pair.images)
    shared = GenerativeScorer(model, processor, batch_size=4)
    padded = GenerativeScorer(model, processor, layout="padded")
    rewards = shared([three, TEXT])
    assert [len(r) for r in rewards] == [3, 2]
    assert sum(rewards[0]) == 3.0 and sum(rewards[1]) == 1.0  # every pair's win is shared out
    assert all(r in (0.0, 0.5, 1.0, 1.5, 2.0) for r in rewards[0])
    assert shared.judge_stats()["judge_calls"] == 6 + 2
    p_shared = shared.judge_probs([shared.encode(three)])[0]
    p_padded = padded.judge_probs([padded.encode(three)])[0]
    assert set(p_shared) == {(i, j) for i in range(3) for j in range(3) if i != j}
    assert all(p_shared[k] == pytest.approx(p_padded[k], abs=1e-5) for k in p_shared)


def test_r1_reasoning_generated_at_inference_is_bounded_counted_and_read_as_training_reads_it(
    backbone, processor, data, tmp_path
):
    model = GenerativeModel.from_backbone(backbone, "r1").eval()
    sample = read_pairs(data / "test.jsonl")[2].as_sample()
    forced = GenerativeScorer(model, processor)
    thinking = GenerativeScorer(model, processor, think_tokens=4)
    enc = thinking.encode(sample)
    p = thinking.judge_probs([enc])[0]
    assert (
        thinking.judge_stats()["generated_tokens"] <= 2 * 4 and forced.judge_stats()["generated_tokens"] == 0
    )
    # the verdict is read after the generated reasoning, tokenised as training tokenises meta.reasoning
    device = torch.device("cpu")
    for (i, j), prob in p.items():
        reasoning = thinking.reason(enc, i, j, device)
        call = thinking.judge.call(enc.prompt, enc.responses[i], enc.responses[j], reasoning)
        batch = COLLATORS["padded"]([EncodedSample(enc.prompt, [call])], thinking.encoder.pad_id)
        with torch.no_grad():
            logits = model.verdict_logits(batch, thinking.judge.verdict_ids)[0]
        assert prob == pytest.approx(torch.sigmoid(logits[0] - logits[1]).item(), abs=1e-5)
    seed_model = GenerativeScorer(GenerativeModel(model.lm, "qwen2_5_vl", "seed"), processor, think_tokens=4)
    assert seed_model.think_tokens == 0  # only r1 has a think block
    model.think_tokens = 3  # the checkpoint's setting is what score / eval / serve use
    model.save(tmp_path / "r1", processor)
    assert load_scorer(tmp_path / "r1", device="cpu").think_tokens == 3


def test_config_fields_and_their_checks():
    from basereward.config import ConfigError, load_config

    required = ["model.backbone=b", "data.train=t.jsonl"]
    cfg = load_config(
        None, [*required, "paradigm=generative", "generative.format=r1", "generative.think_tokens=64"]
    )
    assert cfg.paradigm == "generative" and cfg.generative == GenerativeArgs("r1", 64)
    assert load_config(None, required).paradigm == "naive"  # the default, unchanged
    for bad, message in [
        (["paradigm=critique"], "paradigm must be one of"),
        (["paradigm=generative", "generative.format=long"], "generative.format must be one of"),
        (["paradigm=generative", "generative.think_tokens=8"], "0 unless format is r1"),
        (
            ["paradigm=generative", "model.head.layers=3", "lora.rank=8"],
            "does not take model.head, lora.rank",
        ),
        (["paradigm=generative", "distributed.strategy=fsdp"], "does not take distributed.strategy"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, [*required, *bad])


def test_save_then_load_scorer_gives_the_same_probabilities(model, processor, backbone, data, tmp_path):
    model.save(tmp_path / "gen", processor)
    meta = json.loads((tmp_path / "gen" / "basereward.json").read_text())
    assert meta["paradigm"] == "generative" and meta["generative"]["format"] == "seed"
    assert not (tmp_path / "gen" / "head.safetensors").exists()
    loaded = load_scorer(tmp_path / "gen", device="cpu", progress=False)
    assert isinstance(loaded, GenerativeScorer) and paradigm_of(tmp_path / "gen") == "generative"
    pair = read_pairs(data / "test.jsonl")[1]
    samples = [pair.as_sample(), TEXT]
    before = GenerativeScorer(model, processor)
    for a, b in zip(
        before.judge_probs(list(map(before.encode, samples))),
        loaded.judge_probs(list(map(loaded.encode, samples))),
    ):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=1e-6) for k in a)
    from basereward.model.reward_model import load_reward_model

    with pytest.raises(DataError, match="'generative' reward model.*load_scorer"):
        load_reward_model(tmp_path / "gen")
    meta["paradigm"] = "judge"
    (tmp_path / "gen" / "basereward.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="field paradigm 'judge'"):
        load_scorer(tmp_path / "gen")


def test_eval_and_score_verbs_take_a_generative_dir(model, processor, data, tmp_path, capsys):
    model.save(tmp_path / "gen", processor)
    test = str(data / "test.jsonl")
    args = [
        "eval",
        "--benchmark",
        "pairs",
        "--data",
        test,
        "--model",
        str(tmp_path / "gen"),
        "--out",
        str(tmp_path / "ev"),
    ]
    assert cli_main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rewards = score_pairs(GenerativeScorer(model, processor), read_pairs(test))
    assert result["n"] == 12 and result["accuracy"] == sum(c > r for c, r in rewards) / 12  # ties count wrong
    judge = result["judge"]  # eval reports the judge's work and its order agreement, for this run alone
    assert (judge["judge_calls"], judge["pairs_judged"]) == (24, 12)  # each pair in both orders
    assert (
        judge["orders_agreed"] + judge["order_ties"] == 12
        and judge["order_agreement"] == judge["orders_agreed"] / 12
    )
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["judge"] == judge
    out = tmp_path / "scores.jsonl"
    assert cli_main(["score", "--model", str(tmp_path / "gen"), "--input", test, "--output", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(x["reward_chosen"], x["reward_rejected"]) for x in lines] == rewards
    assert all(
        x["reward_chosen"] + x["reward_rejected"] == 1.0 for x in lines
    )  # one win per pair, or half each


def config(out, backbone, data, **kw):
    base = dict(
        output_dir=str(out),
        seed=0,
        paradigm="generative",
        model=ModelArgs(backbone=str(backbone)),
        data=DataArgs(train=str(data / "train.jsonl"), validation=str(data / "validation.jsonl")),
        optim=OptimArgs(lr=2e-3, warmup_steps=2, weight_decay=0.0),
        batch_size=8,
        micro_batch_size=4,
        max_steps=2,
        log_every=1,
        progress=False,
        tensorboard=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_one_step_moves_the_lm_and_merger_not_the_frozen_vision(backbone, data, tmp_path):
    """r1 format, with a reasoning on some pairs: every trainable tensor moves, the frozen vision blocks do not,
    and the final directory is a whole generation model (LM head included, no reward head)."""
    pairs = read_pairs(data / "train.jsonl")
    for p in pairs[::2]:
        p.meta["reasoning"] = f"The answer names {p.chosen.split()[-1]}"
    write_pairs(tmp_path / "train.jsonl", pairs)
    shutil.copytree(data / "images", tmp_path / "images")
    shutil.copy(data / "validation.jsonl", tmp_path / "validation.jsonl")
    res = train_main(
        config(
            tmp_path / "run",
            backbone,
            tmp_path,
            max_steps=1,
            freeze_vision=True,
            generative=GenerativeArgs("r1"),
        )
    )
    before, after = (
        load_file(str(backbone / "model.safetensors")),
        load_file(res["model_dir"] + "/model.safetensors"),
    )
    assert set(before) == set(after) and "lm_head.weight" in after
    frozen = [k for k in before if k.startswith("visual.") and not k.startswith("visual.merger.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    moved = [k for k in before if k not in frozen and not torch.equal(before[k], after[k])]
    assert sorted(moved) == sorted(k for k in before if k not in frozen)
    final = tmp_path / "run" / "final"
    assert not (final / "head.safetensors").exists()
    meta = json.loads((final / "basereward.json").read_text())
    assert meta["generative"] == {"format": "r1", "order_seed": 0, "verdicts": ["1", "2"], "think_tokens": 0}
    # the order record: every training pair's position, as the seeded coin gives it
    record = [json.loads(x) for x in (tmp_path / "run" / "judge_order.jsonl").read_text().splitlines()]
    assert [r["id"] for r in record] == [p.id for p in pairs]
    assert all(r["chosen"] == chosen_position(0, r["id"]) for r in record)
    assert meta["order"] == res["judge_order"]
    assert res["judge_order"]["chosen_first"] == sum(r["chosen"] == 1 for r in record)
    assert res["validation"]["judge_calls"] == 2 * res["validation"]["n"] == 24


def test_resume_is_exact(backbone, data, tmp_path):
    kw = dict(max_steps=4, save_every=2, keep_checkpoints=5)
    full = tmp_path / "full"
    train_main(config(full, backbone, data, **kw))
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step-000002", resumed / "checkpoints" / "step-000002")
    assert train_main(config(resumed, backbone, data, resume="auto", **kw))["steps"] == 4
    a, b = (
        load_file(str(full / "final" / "model.safetensors")),
        load_file(str(resumed / "final" / "model.safetensors")),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_short_run_lowers_the_loss(backbone, data, tmp_path):
    """20 steps of 8 pairs (measured: 6.2 -> 2.3). The verdict starts near ln(vocab) = 6 (any token is as likely)
    and first learns to be "1" or "2" (ln 2); which one takes far longer (docs/recipe.md §4)."""
    optim = OptimArgs(lr=3e-3, warmup_steps=3)
    res = train_main(config(tmp_path / "run", backbone, data, max_steps=20, micro_batch_size=8, optim=optim))
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["split"] == "train"]
    assert len(losses) == 20
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.5, losses
    v = res["validation"]
    assert v["n"] == 12 and v["judge_calls"] == 24 and v["orders_agreed"] + v["order_ties"] == 12


def test_ddp_on_two_processes_equals_one_process(backbone, data, tmp_path):
    """The judge trains under DDP (gloo, 2 ranks) as on one process: same losses, same final weights."""
    from dist_utils import torchrun

    args = [f"model.backbone={backbone}", f"data.train={data / 'train.jsonl'}", "paradigm=generative"]
    args += ["batch_size=4", "micro_batch_size=2", "max_steps=2", "log_every=1", "progress=false"]
    args += ["tensorboard=false", "optim.warmup_steps=1"]
    proc = torchrun(["train", *args, f"output_dir={tmp_path / 'ddp'}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["world_size"] == 2
    cfg = config(
        tmp_path / "one", backbone, data, batch_size=4, micro_batch_size=2, optim=OptimArgs(warmup_steps=1)
    )
    single = train_main(dataclasses.replace(cfg, data=DataArgs(train=str(data / "train.jsonl"))))
    assert single["world_size"] == 1
    a = load_file(str(tmp_path / "ddp" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "final" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_serve_judges_the_responses_of_a_group_sent_together(model, processor, tmp_path):
    """The server's batcher merges one prompt's responses into one sample: R1 wins over the group."""
    from fastapi.testclient import TestClient

    from basereward.serve.cli import ServeConfig, build_app

    model.save(tmp_path / "gen", processor)
    prompt = [{"role": "user", "content": "What is 2 + 3?"}]
    answers = ["5", "6", "It is 5."]
    samples = [{"group": "g", "messages": [*prompt, {"role": "assistant", "content": a}]} for a in answers]
    with TestClient(build_app(ServeConfig(model=str(tmp_path / "gen"), device="cpu"))) as client:
        r = client.post("/v1/reward", json={"samples": samples})
        assert r.status_code == 200, r.text
        raw = [x["raw"] for x in r.json()["results"]]
        lone = client.post("/v1/reward", json={"samples": samples[:1]}).json()["results"][0]["raw"]
    expected = GenerativeScorer(model, processor)([Sample(prompt, answers)])[0]
    assert raw == expected and sum(raw) == 3.0
    assert lone == 0.0  # a lone response has nothing to be compared with
