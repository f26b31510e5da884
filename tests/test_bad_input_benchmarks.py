"""The one bad-input policy for benchmarks: each loader (VL-RewardBench, Multimodal RewardBench, MM-RLHF-
RewardBench, our pair JSONL) and `basereward eval` with `--scorer length` and with `--model` (a tiny model), over
files holding each bad record users meet: a truncated line, invalid UTF-8, a record that is not an object, missing
fields and wrong JSON types, an unknown preference label, empty and whitespace-only responses, chosen ==
rejected, a prompt whose tags do not fit the row's one medium; and, read only when a model scores, a missing /
zero-byte / corrupt image, a PNG whose header declares 100,000 x 100,000 pixels (refused from the header), a
missing frames folder and a corrupt video frame.

`--on-error fail` (the default) stops at the first bad record naming `file:line` and its id; `--on-error skip`
counts every bad record once under its cause (`skipped`, `skipped_by_reason`, as `basereward score` reports them)
and scores the rest, which must give the numbers a clean file of the good records gives."""

import json
from collections import Counter

import pytest
from data_fixtures import cli, png
from PIL import Image
from test_bad_input import BAD as PAIR_BAD
from test_bad_input import record as pair_record
from test_eval_cli import mmrb_by_hand, mmrlhf_by_hand, vlrb_by_hand
from test_image_verify import png_header

from basereward.data.benchmarks import load_benchmark
from basereward.data.io import LoadStats
from basereward.types import DataError


def line(rec: dict) -> bytes:
    return json.dumps(rec).encode()


def truncated(rec: dict) -> bytes:
    return line(rec)[:-9]


def bad_utf8(rec: dict) -> bytes:
    raw = line(rec)
    assert b"blue" in raw
    return raw.replace(b"blue", b"bl\xffue", 1)


# --- each benchmark: its good records, the records its loader refuses, the ones only a model's media check refuses

# Every entry of a bad list: (the record's bytes, the cause it is counted under, the id a fail message names or
# None where the record has no readable id).


def vlrb(rid, response=("The shape is red.", "The shape is blue."), ranking=(0, 1), **kw) -> dict:
    rec = {
        "id": rid,
        "query": "<image>\nWhat colour is the shape?",
        "response": list(response),
        "human_ranking": list(ranking),
        "image_path": "ok.png",
        "models": ["m1", "m2"],
        "judge": "human",
    }
    rec.update(kw)
    return rec


VLRB_GOOD = [
    vlrb("hallucination_pair-1", ("a long right answer", "short")),
    vlrb("RLAIF-V-2", ("wrong but much longer", "right"), (1, 0)),
    vlrb("mathverse_3", ("30 degrees, because", "45")),
    vlrb("wildvision-battle-4", ("abc", "abcdef")),
]
VLRB_LOADER_BAD = [
    (truncated(vlrb("x-91")), "malformed JSON", None),
    (bad_utf8(vlrb("x-92")), "invalid UTF-8", None),
    (b'["not", "an object"]', "a record must be a JSON object, got list", None),
    (line(vlrb(None)), "missing or empty 'id'", None),
    (line(vlrb(95)), "field 'id' must be a string, got int", None),
    (line({k: v for k, v in vlrb("x-96").items() if k != "query"}), "missing field 'query'", "x-96"),
    (line(vlrb("x-97", response="both")), "'response' must be a list of 2 strings", "x-97"),
    (line(vlrb("x-98", ranking=(0, 0))), "'human_ranking' must be [0, 1] or [1, 0] (unknown label)", "x-98"),
    (
        line(vlrb("x-99", ranking=("a", "b"))),
        "'human_ranking' must be [0, 1] or [1, 0] (unknown label)",
        "x-99",
    ),
    (line(vlrb("x-100", ("", "The shape is blue."))), "empty response in field 'response[0]'", "x-100"),
    (line(vlrb("x-101", ("The shape is red.", " \n\t"))), "empty response in field 'response[1]'", "x-101"),
    (line(vlrb("x-102", ("Red.", "Red. "))), "chosen == rejected", "x-102"),
    (line(vlrb("x-103", query="<image>\n<image>\nQ?")), "image placeholder count mismatch", "x-103"),
    (
        line(vlrb("x-104", ("<image> It is red.", "Blue."))),
        "field 'response[0]' contains an <image>/<video> tag",
        "x-104",
    ),
]
VLRB_MEDIA_BAD = [
    (line(vlrb("m-1", image_path="missing.png")), "image file not found", "m-1"),
    (line(vlrb("m-2", image_path="empty.png")), "corrupt or unreadable image", "m-2"),
    (line(vlrb("m-3", image_path="corrupt.png")), "corrupt or unreadable image", "m-3"),
    # PIL's own header check (2 x its 89 MP limit) fires before ours at this size; either way nothing is decoded
    (line(vlrb("m-4", image_path="bomb.png")), "image too large to decode", "m-4"),
]


def mmrb(rid, out1="The shape is red.", out2="The shape is blue.", better="Output1", **kw) -> dict:
    rec = {
        "ID": rid,
        "Text": "What colour is the shape?",
        "Image": "ok.png",
        "Output1": out1,
        "Output2": out2,
        "Better": better,
        "Category": "vqa",
    }
    rec.update(kw)
    return rec


MMRB_GOOD = [
    mmrb("nocaps_1", "a fine caption", "bad", Category="open_generation/correctness_task"),
    mmrb("mathvista_2", "12", "13 since 6+7", "Output2", Category="reasoning"),
    mmrb("RealworldQA_3", "B", "A, the car is left", "Output1"),
]
# A JSON array: a malformed one fails whole (tested below), so its bad records are well-formed JSON.
MMRB_LOADER_BAD = [
    (b'"just a string"', "a record must be a JSON object, got str", None),
    (line(mmrb("")), "missing or empty 'ID'", None),
    (line(mmrb("t_92", Text="")), "empty or missing 'Text'", "t_92"),
    (line(mmrb("t_93", out1=5)), "field 'Output1' must be a string, got int", "t_93"),
    (line({k: v for k, v in mmrb("t_94").items() if k != "Category"}), "missing field 'Category'", "t_94"),
    (line(mmrb("t_95", better=None)), '\'Better\' must be "Output1" or "Output2" (unknown label)', "t_95"),
    (line(mmrb("t_96", out2="")), "empty response in field 'Output2'", "t_96"),
    (line(mmrb("t_97", out1=" \n ")), "empty response in field 'Output1'", "t_97"),
    (line(mmrb("t_98", "Same answer.", "Same answer.")), "chosen == rejected", "t_98"),
    (line(mmrb("t_99", Text="<image><image> Which?")), "image placeholder count mismatch", "t_99"),
]
MMRB_MEDIA_BAD = [
    (line(mmrb("m_1", Image="missing.png")), "image file not found", "m_1"),
    (line(mmrb("m_2", Image="empty.png")), "corrupt or unreadable image", "m_2"),
    (line(mmrb("m_3", Image="corrupt.png")), "corrupt or unreadable image", "m_3"),
    (line(mmrb("m_4", Image="bomb.png")), "image too large to decode", "m_4"),
]


def mmrlhf(rid, chosen="The shape is red.", rejected="The shape is blue.", image="mcq/ok.png", **kw) -> dict:
    rec = {
        "id": rid,
        "image": image,
        "prompt": "What colour is the shape?",
        "chosen": chosen,
        "rejected": rejected,
    }
    rec.update(kw)
    return {k: v for k, v in rec.items() if v is not None}


MMRLHF_GOOD = [
    mmrlhf("q_mcq1", "The answer is B, since...", "B"),
    mmrlhf("q_mcq1", "B", "The answer is A"),  # the same query id: one Acc+ group
    mmrlhf("q_long1", "A long detailed description.", "Short.", image="long/ok.png"),
]
MMRLHF_LOADER_BAD = [
    (truncated(mmrlhf("x91")), "malformed JSON", None),
    (bad_utf8(mmrlhf("x92")), "invalid UTF-8", None),
    (b"42", "a record must be a JSON object, got int", None),
    (line(mmrlhf("x94", video="video/clip")), "a row needs exactly one of 'image' or 'video'", "x94"),
    (line(mmrlhf("x95", image=5)), "the media path must be a string, got int", "x95"),
    (line({k: v for k, v in mmrlhf("x96").items() if k != "chosen"}), "missing field 'chosen'", "x96"),
    (line(mmrlhf("x97", rejected=["blue"])), "field 'rejected' must be a string, got list", "x97"),
    (line(mmrlhf("x98", chosen="")), "empty response in field 'chosen'", "x98"),
    (line(mmrlhf("x99", rejected="\t ")), "empty response in field 'rejected'", "x99"),
    (line(mmrlhf("x100", "It is red.", "It is red.")), "chosen == rejected", "x100"),
    (line(mmrlhf("x101", prompt="<image>\n<image>\nQ?")), "image placeholder count mismatch", "x101"),
    (
        line(mmrlhf("x102", image=None, video="video/clip", prompt="<image>\nWhat happens?")),
        "video placeholder count mismatch",
        "x102",
    ),
]
MMRLHF_MEDIA_BAD = [
    (line(mmrlhf("m1", image="mcq/missing.png")), "image file not found", "m1"),
    (line(mmrlhf("m2", image="mcq/empty.png")), "corrupt or unreadable image", "m2"),
    (line(mmrlhf("m3", image="mcq/corrupt.png")), "corrupt or unreadable image", "m3"),
    (line(mmrlhf("m4", image="mcq/bomb.png")), "image too large to decode", "m4"),
    (line(mmrlhf("m5", image=None, video="video/nowhere")), "video frames folder not found", "m5"),
    (line(mmrlhf("m6", image=None, video="video/badframe")), "corrupt or unreadable image", "m6"),
]

# Our pair JSONL: the very list `basereward score` is tested with. Its reader checks that image files exist when
# it parses a record, so only the decoding failures are left to the media check.
_DECODE_CAUSES = {"corrupt or unreadable image", "image too large to decode"}
PAIRS_GOOD = [
    pair_record(100, chosen="The shape is red, case 0."),
    pair_record(101, chosen="Red."),
    pair_record(102, chosen="The shape is red, case 2."),
]
PAIRS_LOADER_BAD = [(raw, cause, None) for raw, cause in PAIR_BAD if cause not in _DECODE_CAUSES]
PAIRS_MEDIA_BAD = [(raw, cause, None) for raw, cause in PAIR_BAD if cause in _DECODE_CAUSES]


def pairs_by_hand(rows):
    right = sum(len(r["chosen"]) > len(r["rejected"]) for r in rows)
    ties = sum(len(r["chosen"]) == len(r["rejected"]) for r in rows)
    return {"accuracy": 100.0 * right / len(rows), "n": len(rows), "ties": ties}


# name -> (good records, loader-bad, media-bad, metrics by hand (length scorer) over raw records, JSON array?)
SPECS = {
    "vl-rewardbench": (VLRB_GOOD, VLRB_LOADER_BAD, VLRB_MEDIA_BAD, vlrb_by_hand, False),
    "multimodal-rewardbench": (MMRB_GOOD, MMRB_LOADER_BAD, MMRB_MEDIA_BAD, mmrb_by_hand, True),
    "mm-rlhf-rewardbench": (MMRLHF_GOOD, MMRLHF_LOADER_BAD, MMRLHF_MEDIA_BAD, mmrlhf_by_hand, False),
    "pairs": (PAIRS_GOOD, PAIRS_LOADER_BAD, PAIRS_MEDIA_BAD, pairs_by_hand, False),
}
BENCHES = list(SPECS)


def good_lines(name) -> list[bytes]:
    good = SPECS[name][0]
    return [g if isinstance(g, bytes) else line(g) for g in good]


def good_ids(name) -> list[str]:
    return [json.loads(g)["id" if name != "multimodal-rewardbench" else "ID"] for g in good_lines(name)]


def write(path, items: list[bytes], array: bool):
    """JSON lines, or a JSON array with one item per line: item k (0-based) starts on line k + 2."""
    body = b"[\n" + b",\n".join(items) + b"\n]\n" if array else b"".join(i + b"\n" for i in items)
    path.write_bytes(body)
    return path


def where(path, k: int, array: bool) -> str:
    """How the loaders locate the k-th record (0-based) of a file `write` wrote."""
    return f"{path}:{k + 2} item {k}" if array else f"{path}:{k + 1}"


def by_cause(*bad_lists) -> dict[str, int]:
    return dict(Counter(cause for bad in bad_lists for _, cause, _ in bad))


def mixed(name) -> list[bytes]:
    """Good records first, between and last, with every bad one in between: none of the good may be lost."""
    good = good_lines(name)
    _, loader_bad, media_bad, _, _ = SPECS[name]
    bad = [raw for raw, _, _ in loader_bad + media_bad]
    half = len(bad) // 2
    return [good[0], *bad[:half], *good[1:-1], *bad[half:], good[-1]]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One folder holding every data file of this module and the media they name."""
    root = tmp_path_factory.mktemp("bad-benchmarks")
    bomb = png_header(100_000, 100_000)
    assert len(bomb) < 100  # a header, no pixels: refusing it must not decode anything
    for folder in (root, root / "mcq", root / "long"):
        folder.mkdir(exist_ok=True)
        (folder / "ok.png").write_bytes(png(0))
        (folder / "empty.png").write_bytes(b"")
        (folder / "corrupt.png").write_bytes(png(1)[:40] + b"\x00" * 64)  # a valid header, then garbage
        (folder / "bomb.png").write_bytes(bomb)
    for clip in ("clip", "badframe"):
        (root / "video" / clip).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (28, 28), (i * 60, 0, 0)).save(root / "video" / clip / f"{i:04d}.jpg")
    (root / "video" / "badframe" / "0001.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return root


# --- the loaders ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BENCHES)
def test_loader_fails_on_each_bad_record_naming_file_line_and_id(root, name):
    _, loader_bad, _, _, array = SPECS[name]
    good = good_lines(name)
    for k, (raw, cause, rid) in enumerate(loader_bad):
        path = write(root / f"{name}-fail-{k}.json", [good[0], raw, good[1]], array)
        with pytest.raises(DataError) as err:
            load_benchmark(name, path)
        message = str(err.value)
        # "file:line (id X): cause"; our pair JSONL names no id, and an image entry as "file:line images[i]"
        assert message.startswith(where(path, 1, array)), (k, message)
        assert cause in message and (rid is None or f"(id {rid}): " in message), (k, message)


@pytest.mark.parametrize("name", BENCHES)
def test_loader_skip_counts_each_bad_record_by_cause_and_keeps_the_rest(root, name):
    _, loader_bad, media_bad, _, array = SPECS[name]
    path = write(root / f"{name}-skip.json", mixed(name), array)
    stats = LoadStats()
    pairs = load_benchmark(name, path, on_error="skip", stats=stats)
    assert stats.skipped == by_cause(loader_bad)
    assert (stats.lines, stats.kept) == (len(mixed(name)), len(pairs))
    # the loader reads no media: the records with bad images are kept, in file order, for a scorer to check
    media_ids = [
        json.loads(raw)["id" if name != "multimodal-rewardbench" else "ID"] for raw, _, _ in media_bad
    ]
    kept = [p.meta["original_id"] for p in pairs]
    assert sorted(kept) == sorted(good_ids(name) + media_ids)
    assert [i for i in kept if i in good_ids(name)] == [i for i in good_ids(name) if i in kept]
    # the limit counts good pairs only
    assert [p.meta["original_id"] for p in load_benchmark(name, path, limit=2, on_error="skip")] == kept[:2]


def test_repeated_ids_are_numbered_over_the_kept_records_only(root):
    rows = [vlrb("dup"), vlrb("dup", ("x", "x")), vlrb("dup", ("yes", "no"))]
    path = write(root / "dup.jsonl", [line(r) for r in rows], False)
    stats = LoadStats()
    pairs = load_benchmark("vl-rewardbench", path, on_error="skip", stats=stats)
    assert [p.id for p in pairs] == ["dup", "dup#2"] and stats.skipped == {"chosen == rejected": 1}


def test_a_malformed_json_array_fails_whole_even_under_skip(root):
    # one broken array cannot be read item by item: nothing after the break can be located
    items = [line(MMRB_GOOD[0]), truncated(mmrb("t_1")), line(MMRB_GOOD[1])]
    path = write(root / "broken-array.json", items, True)
    with pytest.raises(DataError, match=rf"{path}:3: malformed JSON array"):
        load_benchmark("multimodal-rewardbench", path, on_error="skip")
    write(path, [line(MMRB_GOOD[0]), bad_utf8(mmrb("t_2")), line(MMRB_GOOD[1])], True)
    with pytest.raises(DataError, match=rf"{path}:3: invalid UTF-8"):
        load_benchmark("multimodal-rewardbench", path, on_error="skip")


def test_on_error_must_be_fail_or_skip(root):
    with pytest.raises(ValueError, match="on_error"):
        load_benchmark("pairs", root / "any.jsonl", on_error="ignore")


# --- basereward eval --scorer length ------------------------------------------------------------------------------


def headline(result: dict, expected: dict) -> dict:
    return {k: result[k] for k in expected}


@pytest.mark.parametrize("name", BENCHES)
def test_eval_length_fail_then_skip(root, name):
    goods, loader_bad, media_bad, by_hand, array = SPECS[name]
    path = write(root / f"{name}-length.json", mixed(name), array)
    rc, result, err = cli("eval", "--benchmark", name, "--data", path, "--scorer", "length")
    assert rc == 1 and result is None
    assert where(path, 1, array) in err  # the first bad record, right after the first good one

    out = root / f"{name}-length-report"
    rc, result, err = cli(
        "eval", "--benchmark", name, "--data", path, "--scorer", "length", "--on-error", "skip", "--out", out
    )
    assert rc == 0, err
    assert result["skipped"] == len(loader_bad) and result["skipped_by_reason"] == by_cause(loader_bad)
    # the length baseline reads no image, so the records with bad media are scored with the good ones
    scored = [json.loads(g) for g in good_lines(name)] + [json.loads(raw) for raw, _, _ in media_bad]
    assert headline(result, by_hand(scored)) == by_hand(scored)
    info = json.loads((out / "metrics.json").read_text())
    assert info["skipped"] == len(loader_bad) and info["skipped_by_reason"] == by_cause(loader_bad)
    assert any(w.startswith(f"skipped {len(loader_bad)} bad record(s)") for w in info["warnings"])


def test_eval_result_reports_zero_skips_on_a_clean_file(root):
    path = write(root / "clean.jsonl", good_lines("vl-rewardbench"), False)
    rc, result, err = cli("eval", "--benchmark", "vl-rewardbench", "--data", path, "--scorer", "length")
    assert rc == 0, err
    assert result["skipped"] == 0 and result["skipped_by_reason"] == {}
    assert headline(result, vlrb_by_hand(VLRB_GOOD)) == vlrb_by_hand(VLRB_GOOD)


# --- basereward eval --model (a tiny model) -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_rm(tiny_dirs, tmp_path_factory):
    import torch

    from basereward.model.processor import load_processor
    from basereward.model.reward_model import RewardModel

    out = tmp_path_factory.mktemp("bad-bench-rm") / "rm"
    model = RewardModel.from_backbone(tiny_dirs["qwen2_5_vl"], seed=3)
    with torch.no_grad():  # spread the rewards, so that no pair is a near-tie
        for p in model.head.parameters():
            p.normal_(0, 0.5)
    model.save(out, load_processor(tiny_dirs["qwen2_5_vl"], "qwen2_5_vl"))
    return out


@pytest.mark.parametrize("name", BENCHES)
def test_eval_model_fails_on_each_bad_medium_naming_the_record(root, name, tiny_rm):
    _, _, media_bad, _, array = SPECS[name]
    good = good_lines(name)
    for k, (raw, cause, rid) in enumerate(media_bad):
        path = write(root / f"{name}-media-{k}.json", [good[0], raw, good[1]], array)
        rc, result, err = cli("eval", "--benchmark", name, "--data", path, "--model", tiny_rm)
        assert rc == 1 and result is None, (k, err)
        located = where(path, 1, array) + (f" id={rid}" if rid else " images[0]")
        assert f"{located}: {cause}" in err, (k, err)


@pytest.mark.parametrize("name", BENCHES)
def test_eval_model_skip_counts_every_cause_and_scores_the_good_records_as_a_clean_file(root, name, tiny_rm):
    _, loader_bad, media_bad, _, array = SPECS[name]
    path = write(root / f"{name}-model.json", mixed(name), array)
    rc, skipping, err = cli(
        "eval", "--benchmark", name, "--data", path, "--model", tiny_rm, "--on-error", "skip"
    )
    assert rc == 0, err
    assert skipping["skipped"] == len(loader_bad) + len(media_bad)
    assert skipping["skipped_by_reason"] == by_cause(loader_bad, media_bad)

    clean = write(root / f"{name}-model-clean.json", good_lines(name), array)
    rc, expected, err = cli("eval", "--benchmark", name, "--data", clean, "--model", tiny_rm)
    assert rc == 0, err
    assert expected["skipped"] == 0
    numbers = {k: v for k, v in expected.items() if k not in ("skipped", "skipped_by_reason", "pairs_per_s")}
    assert {k: skipping[k] for k in numbers} == numbers
