"""Synthetic grounded pairs: deterministic, leak-free splits, and text alone cannot tell chosen from rejected."""

import hashlib
from collections import Counter

from basereward.data.io import read_pairs
from basereward.data.synthetic import addition_splits, code_splits, synthesize


def digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_deterministic_by_seed(tmp_path):
    synthesize(tmp_path / "a", pairs=60, eval_pairs=20, seed=3)
    synthesize(tmp_path / "b", pairs=60, eval_pairs=20, seed=3)
    synthesize(tmp_path / "c", pairs=60, eval_pairs=20, seed=4)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_splits_share_no_prompt_image_and_no_text_prompt(tmp_path):
    synthesize(tmp_path, pairs=300, eval_pairs=100, seed=0)
    keys, text_prompts = {}, {}
    for split in ("train", "validation", "test"):
        pairs = read_pairs(tmp_path / f"{split}.jsonl")
        assert {p.meta["kind"] for p in pairs} == {"colour", "shape", "count", "position", "code"}
        for p in pairs:
            if p.images:
                img = p.images[0].load()
                keys.setdefault(
                    hashlib.sha1(p.prompt[0]["content"].encode() + img.tobytes()).hexdigest(), set()
                ).add(split)
                assert img.size == (112, 112)
            else:
                text_prompts.setdefault(p.prompt[0]["content"], set()).add(split)
    assert all(len(s) == 1 for s in keys.values())
    assert all(len(s) == 1 for s in text_prompts.values())
    for splits in (code_splits(0), addition_splits(0)):
        assert not set(splits["train"]) & (set(splits["test"]) | set(splits["validation"]))
        assert not set(splits["test"]) & set(splits["validation"])


def test_code_pairs_need_the_prompt_and_hold_out_their_codes(tmp_path):
    """Text kind `code`: chosen repeats the prompt's code, rejected changes one digit to one not in the code; the
    test codes never occur in training. The `addition` kind stays available."""
    synthesize(tmp_path / "code", pairs=400, eval_pairs=100, seed=2, text_share=0.5)
    codes = {}
    for split in ("train", "test"):
        for p in read_pairs(tmp_path / "code" / f"{split}.jsonl", check_images=False):
            if p.meta["kind"] != "code":
                continue
            code = p.prompt[0]["content"].split(" is ")[1].split(".")[0].split()
            wrong = p.rejected.removeprefix("The code is ").rstrip(".").split()
            assert p.chosen == f"The code is {' '.join(code)}." and len(wrong) == len(code) == 3
            diff = [i for i in range(3) if wrong[i] != code[i]]
            assert len(diff) == 1 and wrong[diff[0]] not in code
            codes.setdefault(split, set()).add(tuple(code))
    assert codes["train"] and codes["test"] and not codes["train"] & codes["test"]
    synthesize(tmp_path / "add", pairs=40, eval_pairs=10, seed=2, text_share=0.5, text_kind="addition")
    assert any(p.meta["kind"] == "addition" for p in read_pairs(tmp_path / "add" / "train.jsonl"))


def test_answers_are_symmetric_so_text_alone_cannot_tell(tmp_path):
    synthesize(tmp_path, pairs=2000, eval_pairs=10, seed=1, text_share=0.0)
    pairs = read_pairs(tmp_path / "train.jsonl", check_images=False)
    for kind in ("colour", "shape", "count", "position"):
        ps = [p for p in pairs if p.meta["kind"] == kind]
        chosen, rejected = Counter(p.chosen for p in ps), Counter(p.rejected for p in ps)
        assert set(chosen) == set(rejected), kind
        # every answer sentence is about as often right as wrong: a text-only rule scores ~50%
        best_text_rule = sum(max(chosen[a], rejected[a]) for a in chosen) / (2 * len(ps))
        assert best_text_rule < 0.58, (kind, best_text_rule)
        assert all(p.chosen != p.rejected for p in ps)
