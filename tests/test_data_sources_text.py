"""Text-only converters and import formats, each on a fixture in its public schema (docs/datasets.md
§3): Ultra-Hard / Ultra-All (exact pairs on a hand-made UltraFeedback fixture), Tulu-3 IF, OLMo-2, WildChat, UF
on-policy, SHP, swe-arena, ms-swift RM, LLaMA-Factory pairwise, our pair JSONL."""

import pyarrow as pa
from data_fixtures import convert, png, write_json, write_jsonl, write_parquet


def _completion(model, overall, fine, text):
    return {
        "model": model,
        "principle": "helpfulness",
        "custom_system_prompt": "You are helpful.",
        "response": text,
        "critique": "ok",
        "overall_score": overall,
        "fine-grained_score": fine,
        "annotations": {
            "instruction_following": {"Rating": "4", "Rationale": "."},
            "honesty": {"Rating": "N/A", "Rationale": "."},
            "truthfulness": {"Rating": "3", "Type": ["0"], "Rationale": ".", "Rating_Rationale": "."},
            "helpfulness": {"Rating": "5", "Type": ["1"], "Rationale": ".", "Rating_Rationale": "."},
        },
    }


def _ultrafeedback(path):
    rows = [
        {  # distinct scores: hard = 8.5 vs 3.0
            "source": "evol_instruct",
            "instruction": "Name a prime.",
            "models": ["a", "b", "c", "d"],
            "completions": [
                _completion("a", 7.0, 4.0, "Seven."),
                _completion("b", 8.5, 4.5, "Two."),
                _completion("c", 3.0, 2.0, "Nine."),
                _completion("d", 7.0, 3.5, "Eleven."),
            ],
            "correct_answers": ["2"],
            "incorrect_answers": ["9"],
        },
        {  # max tie broken by fine-grained (b wins), min tie broken by fine-grained (d loses)
            "source": "flan",
            "instruction": "Say hi.",
            "models": ["a", "b", "c", "d"],
            "completions": [
                _completion("a", 9.0, 4.0, "Hi."),
                _completion("b", 9.0, 4.8, "Hello!"),
                _completion("c", 6.0, 3.0, "Hey"),
                _completion("d", 6.0, 2.5, "..."),
            ],
            "correct_answers": [],
            "incorrect_answers": [],
        },
        {  # all tied on overall_score: skipped by hard, no pair in all
            "source": "sharegpt",
            "instruction": "Tied.",
            "models": ["a", "b"],
            "completions": [_completion("a", 5.0, 4.0, "x"), _completion("b", 5.0, 3.0, "y")],
            "correct_answers": [],
            "incorrect_answers": [],
        },
        {  # one completion only (the other has no numeric score): skipped
            "source": "ultrachat",
            "instruction": "Lonely.",
            "models": ["a", "b"],
            "completions": [_completion("a", 5.0, 4.0, "x"), _completion("b", None, None, "y")],
            "correct_answers": [],
            "incorrect_answers": [],
        },
    ]
    return write_parquet(path, rows)


def test_ultrafeedback_hard_exact_pairs(tmp_path):
    src = _ultrafeedback(tmp_path / "UltraFeedback" / "train-00000-of-00001.parquet")
    report, pairs = convert("ultrafeedback-hard", src.parent, tmp_path / "hard")
    assert [(p.id, p.prompt[0]["content"], p.chosen, p.rejected, p.margin) for p in pairs] == [
        ("ultra_hard:0:0", "Name a prime.", "Two.", "Nine.", 5.5),
        ("ultra_hard:1:0", "Say hi.", "Hello!", "...", 3.0),
    ]
    assert report["dropped"] == {"all completions tied": 1, "fewer than 2 scored completions": 1}
    assert pairs[0].meta["subset"] == "evol_instruct" and pairs[0].meta["chosen_model"] == "b"
    assert (pairs[1].meta["fine_grained_chosen"], pairs[1].meta["fine_grained_rejected"]) == (4.8, 2.5)
    assert all(len(p.prompt) == 1 and p.images == [] for p in pairs)  # custom_system_prompt dropped


def test_ultrafeedback_all_exact_pairs(tmp_path):
    src = _ultrafeedback(tmp_path / "uf.parquet")
    _, pairs = convert("ultrafeedback-all", src, tmp_path / "all")
    got = [(p.id, p.chosen, p.rejected, p.margin) for p in pairs]
    assert got == [
        ("ultra_all:0:0", "Two.", "Seven.", 1.5),
        ("ultra_all:0:1", "Seven.", "Nine.", 4.0),
        ("ultra_all:0:2", "Two.", "Nine.", 5.5),
        ("ultra_all:0:3", "Two.", "Eleven.", 1.5),
        ("ultra_all:0:4", "Eleven.", "Nine.", 4.0),
        ("ultra_all:1:0", "Hi.", "Hey", 3.0),
        ("ultra_all:1:1", "Hi.", "...", 3.0),
        ("ultra_all:1:2", "Hello!", "Hey", 3.0),
        ("ultra_all:1:3", "Hello!", "...", 3.0),
    ]  # a/d (7.0 vs 7.0) and the tied prompts give no pair


def _conv(*turns):
    return [{"content": c, "role": r} for r, c in turns]  # the public column order: content, role


def test_tulu3_if_last_turn_split(tmp_path):
    rows = [
        {
            "id": "if-1",
            "prompt": "Answer in 3 words.",
            "chosen": _conv(("user", "Answer in 3 words."), ("assistant", "Yes it is.")),
            "rejected": _conv(("user", "Answer in 3 words."), ("assistant", "Certainly, that is correct.")),
        },
        {
            "id": "if-2",
            "prompt": "x",
            "chosen": _conv(("user", "A"), ("assistant", "B")),
            "rejected": _conv(("user", "different"), ("assistant", "C")),
        },
    ]
    report, pairs = convert("tulu-3-if", write_parquet(tmp_path / "train.parquet", rows), tmp_path / "out")
    assert report["dropped"] == {"chosen/rejected prompts differ": 1}
    p = pairs[0]
    assert (p.id, p.source, p.prompt, p.chosen, p.rejected) == (
        "tulu3_if:if-1:0",
        "tulu3_if",
        [{"role": "user", "content": "Answer in 3 words."}],
        "Yes it is.",
        "Certainly, that is correct.",
    )
    assert p.meta["license"] == "odc-by-1.0"


def test_olmo2_ratings_scores_and_ties(tmp_path):
    base = {"prompt": "Q", "chosen_model": "m1", "rejected_model": "m2", "source": "wildchat"}
    rows = [
        {
            **base,
            "id": "o1",
            "chosen": _conv(("system", "Be brief."), ("user", "Q"), ("assistant", "good")),
            "rejected": _conv(("system", "Be brief."), ("user", "Q"), ("assistant", "bad")),
            "chosen_rating": 5.0,
            "rejected_rating": 2.0,
        },
        {
            **base,
            "id": "o2",
            "chosen": _conv(("user", "Q"), ("assistant", "a")),
            "rejected": _conv(("user", "Q"), ("assistant", "b")),
            "chosen_rating": 3.0,
            "rejected_rating": 3.0,
        },
    ]
    report, pairs = convert("olmo-2-mix", write_parquet(tmp_path / "olmo.parquet", rows), tmp_path / "out")
    assert report["dropped"] == {"tie": 1}
    p = pairs[0]
    assert p.prompt == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"}]
    assert (p.score_chosen, p.score_rejected, p.margin, p.source) == (5.0, 2.0, 3.0, "olmo2")
    assert p.meta["source"] == "wildchat" and p.meta["chosen_model"] == "m1"


def test_wildchat_split_selection_and_multi_turn_prompt(tmp_path):
    multi = {
        "id": "w1",
        "prompt": "hi",
        "chosen": _conv(
            ("user", "hi"), ("assistant", "hello"), ("user", "tell a joke"), ("assistant", "funny")
        ),
        "rejected": _conv(
            ("user", "hi"), ("assistant", "hello"), ("user", "tell a joke"), ("assistant", "no")
        ),
    }
    other = {**multi, "id": "w2"}
    data = tmp_path / "tulu-3-wildchat-ultrafeedback" / "data"
    write_parquet(data / "wildchat_reused_on_policy_70b-00000-of-00001.parquet", [multi])
    write_parquet(data / "wildchat_if-00000-of-00001.parquet", [other])
    write_parquet(data / "wildchat_if_on_policy_70b-00000-of-00001.parquet", [other])
    _, pairs = convert(
        "tulu-3-wildchat", data.parent, tmp_path / "out", "--split", "wildchat_reused_on_policy_70b"
    )
    assert [p.id for p in pairs] == ["wildchat:w1:0"]
    assert [m["role"] for m in pairs[0].prompt] == ["user", "assistant", "user"] and pairs[
        0
    ].chosen == "funny"
    _, uf = convert(
        "tulu-3-ultrafeedback-on-policy", data / "wildchat_if-00000-of-00001.parquet", tmp_path / "uf"
    )
    assert uf[0].source == "uf_onpolicy"


def test_shp_subreddit_folders_and_labels(tmp_path):
    def row(post, label, a, b, ratio):
        return {
            "post_id": post,
            "domain": "askculinary_train",
            "upvote_ratio": 0.98,
            "history": f"How do I {post}?",
            "c_root_id_A": "ca",
            "c_root_id_B": "cb",
            "created_at_utc_A": 1600000000,
            "created_at_utc_B": 1600000100,
            "score_A": a,
            "score_B": b,
            "human_ref_A": "Comment A.",
            "human_ref_B": "Comment B.",
            "labels": label,
            "seconds_difference": 100.0,
            "score_ratio": ratio,
        }

    write_jsonl(
        tmp_path / "SHP" / "askculinary" / "train.json",
        [row("boil", 1, 40, 10, 4.0), row("fry", 0, 3, 12, 4.0)],
    )
    write_jsonl(tmp_path / "SHP" / "askculinary" / "test.json", [row("bake", 1, 2, 1, 2.0)])
    _, pairs = convert("shp", tmp_path / "SHP", tmp_path / "out")
    assert [(p.prompt[0]["content"], p.chosen, p.rejected, p.score_chosen) for p in pairs] == [
        ("How do I boil?", "Comment A.", "Comment B.", 40.0),
        ("How do I fry?", "Comment B.", "Comment A.", 12.0),
    ]
    assert abs(pairs[0].margin - 1.3862943611198906) < 1e-12 and pairs[0].id == "shp:boil:ca-cb"


def test_swe_arena_votes_and_single_turn(tmp_path):
    def row(sid, vote, a_msgs, b_msgs):
        return {
            "type": "code",
            "chat_session_id": sid,
            "instruction": "Write fizzbuzz.",
            "feedback": {
                "correctness": "A",
                "efficiency": "tie",
                "explainability": "A",
                "maintainability": "B",
                "ui_ux_design": "tie",
                "vote_type": vote,
            },
            "models": {"model_A": "gpt-x", "model_B": "claude-y"},
            "states": {
                "model_A": {"messages": a_msgs, "sandbox_logs_by_round": ["log " * 50]},
                "model_B": {"messages": b_msgs, "sandbox_logs_by_round": ["log"]},
            },
        }

    one = [["user", "Write fizzbuzz."], ["assistant", "code A"]]
    two = [["user", "Write fizzbuzz."], ["assistant", "code B"]]
    multi = one + [["user", "again"], ["assistant", "more"]]
    rows = [
        row("s1", "leftvote", one, two),
        row("s2", "rightvote", one, two),
        row("s3", "tievote", one, two),
        row("s4", "bothbad_vote", one, two),
        row("s5", "leftvote", multi, multi),
    ]
    schema = pa.Table.from_pylist(rows).schema
    report, pairs = convert(
        "swe-arena", write_parquet(tmp_path / "train-00000-of-00003.parquet", rows, schema), tmp_path / "out"
    )
    assert report["dropped"] == {"multi-turn session": 1, "tie or both-bad vote": 2}
    assert [(p.id, p.chosen, p.rejected, p.meta["chosen_model"]) for p in pairs] == [
        ("swe_arena:s1:0", "code A", "code B", "gpt-x"),
        ("swe_arena:s2:0", "code B", "code A", "claude-y"),
    ]
    assert (
        pairs[0].prompt == [{"role": "user", "content": "Write fizzbuzz."}] and "log" not in pairs[0].chosen
    )


def test_ms_swift_rm_import(tmp_path):
    (tmp_path / "img.png").write_bytes(png(21))
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Judge."},
                {"role": "user", "content": "What colour?"},
                {"role": "assistant", "content": "Green."},
            ],
            "rejected_response": "Purple.",
            "images": ["img.png"],
        },
        {
            "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
            "rejected_response": "Go away",
        },
    ]
    _, pairs = convert("ms-swift-rm", write_jsonl(tmp_path / "rm.jsonl", rows), tmp_path / "out")
    assert pairs[0].prompt == [
        {"role": "system", "content": "Judge."},
        {"role": "user", "content": "<image>\nWhat colour?"},
    ]
    assert (pairs[0].chosen, pairs[0].rejected, pairs[0].images[0].data) == ("Green.", "Purple.", png(21))
    assert pairs[1].images == [] and pairs[1].prompt == [{"role": "user", "content": "Hi"}]


def test_llamafactory_pairwise_sharegpt_and_alpaca(tmp_path):
    (tmp_path / "a.png").write_bytes(png(22))
    sharegpt = [
        {
            "conversations": [
                {"from": "human", "value": "Hi"},
                {"from": "gpt", "value": "Hello"},
                {"from": "human", "value": "<image>What is this?"},
            ],
            "chosen": {"from": "gpt", "value": "A cat."},
            "rejected": {"from": "gpt", "value": "A car."},
            "system": "Be precise.",
            "images": ["a.png"],
        }
    ]
    _, pairs = convert("llamafactory-pairwise", write_json(tmp_path / "sg.json", sharegpt), tmp_path / "sg")
    assert [m["role"] for m in pairs[0].prompt] == ["system", "user", "assistant", "user"]
    assert pairs[0].prompt[-1]["content"] == "<image>What is this?" and pairs[0].chosen == "A cat."
    alpaca = [{"instruction": "Translate.", "input": "bonjour", "chosen": "hello", "rejected": "bye"}]
    _, pairs = convert("llamafactory-pairwise", write_json(tmp_path / "al.json", alpaca), tmp_path / "al")
    assert (
        pairs[0].prompt == [{"role": "user", "content": "Translate.\nbonjour"}] and pairs[0].rejected == "bye"
    )


def test_pairs_jsonl_import(tmp_path):
    rec = {
        "id": "x:1",
        "source": "mine",
        "prompt": [{"role": "user", "content": "Q"}],
        "chosen": "a",
        "rejected": "b",
    }
    _, pairs = convert("pairs", write_jsonl(tmp_path / "p.jsonl", [rec]), tmp_path / "out")
    assert (pairs[0].id, pairs[0].source, pairs[0].chosen) == ("x:1", "mine", "a")
