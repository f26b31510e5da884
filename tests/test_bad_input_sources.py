"""The one bad-input policy through `basereward data convert`: the import formats (our pair JSONL, ms-swift RM,
LLaMA-Factory pairwise) and public sources (VLFeedback's JSONL + image folder, RLAIF-V's parquet with embedded
images) over files holding each bad record users meet (truncated line, invalid UTF-8, wrong JSON types, missing
/ zero-byte / corrupt image, a PNG whose header declares 100,000 x 100,000 pixels, a tag count that does not
match the images, empty and whitespace-only responses, chosen == rejected). With `--on-error fail` each stops
the run naming `[source] file:line` (or `file row N`) and its cause, and nothing is written; with `--on-error
skip` each is counted once under its cause in the final JSON and every good row, before and after the bad ones,
is written in order. An import format is a file users write, so what a public source's rows are dropped for
(an empty side, identical sides: known upstream quirks, counted under `dropped`) is bad input there."""

import base64
import json
from collections import Counter

import pytest
from data_fixtures import cli, png, write_parquet
from test_bad_input import BAD as PAIR_BAD
from test_bad_input import record as pair_record
from test_image_verify import png_header

from basereward.data.store import open_pairs


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A folder with a good image and the three bad ones; every data file of this module is written into it."""
    root = tmp_path_factory.mktemp("bad-sources")
    (root / "ok.png").write_bytes(png(0))
    (root / "empty.png").write_bytes(b"")
    (root / "corrupt.png").write_bytes(png(1)[:40] + b"\x00" * 64)  # a valid header, then garbage
    bomb = png_header(100_000, 100_000)
    assert len(bomb) < 100  # no pixels: it can only be refused from its header
    (root / "bomb.png").write_bytes(bomb)
    return root


def swift(i, **kw) -> bytes:
    rec = {
        "id": f"s{i}",
        "messages": [
            {"role": "user", "content": "<image>\nWhat colour is the shape?"},
            {"role": "assistant", "content": f"The shape is red, case {i}."},
        ],
        "rejected_response": "The shape is blue.",
        "images": ["ok.png"],
    }
    rec.update(kw)
    return json.dumps(rec).encode()


def llamafactory(i, **kw) -> bytes:
    rec = {
        "id": f"l{i}",
        "conversations": [{"from": "human", "value": "<image>\nWhat colour is the shape?"}],
        "chosen": {"from": "gpt", "value": f"The shape is red, case {i}."},
        "rejected": {"from": "gpt", "value": "The shape is blue."},
        "images": ["ok.png"],
    }
    rec.update(kw)
    return json.dumps(rec).encode()


def _ask(question, chosen="The shape is red."):
    """ms-swift messages: the prompt, then the chosen reply as the last message."""
    return [{"role": "user", "content": question}, {"role": "assistant", "content": chosen}]


# source -> (record maker, the good records' pair ids, [(bad line, the cause it is counted under)])
IMPORT_FORMATS = {
    "pairs": (
        lambda i: pair_record(100 + i, chosen=f"The shape is red, case {i}."),
        ["r100", "r101", "r102"],
        PAIR_BAD,  # the very list `basereward score` is tested with: the converter must read it alike
    ),
    "ms-swift-rm": (
        swift,
        ["ms_swift_rm:s0:0", "ms_swift_rm:s1:0", "ms_swift_rm:s2:0"],
        [
            (swift(91)[:-9], "malformed JSON"),
            (swift(92).replace(b"blue", b"bl\xffue"), "invalid UTF-8"),
            (swift(93, rejected_response=5), "field 'rejected_response' must be a string, got int"),
            (swift(94, messages="What colour?"), "field 'messages' must be a non-empty list of messages"),
            (swift(95, images=["missing.png"]), "missing image"),
            (swift(96, images=["empty.png"]), "corrupt or unreadable image"),
            (swift(97, images=["corrupt.png"]), "corrupt or unreadable image"),
            (swift(98, images=["bomb.png"]), "image too large to decode"),
            (swift(99, messages=_ask("<image><image>\nQ?")), "image placeholder count mismatch"),
            (swift(100, rejected_response=""), "empty response in field 'rejected_response'"),
            (swift(101, messages=_ask("<image>\nQ?", " \n\t")), "empty response in field 'messages[-1]'"),
            (swift(102, rejected_response="The shape is red, case 102. "), "chosen == rejected"),
        ],
    ),
    "llamafactory-pairwise": (
        llamafactory,
        ["llamafactory:l0:0", "llamafactory:l1:0", "llamafactory:l2:0"],
        [
            (llamafactory(91)[:-9], "malformed JSON"),
            (llamafactory(92).replace(b"blue", b"bl\xffue"), "invalid UTF-8"),
            (llamafactory(93, chosen=5), "field 'chosen' must be a string, got int"),
            (llamafactory(94, images=["missing.png"]), "missing image"),
            (llamafactory(95, images=["empty.png"]), "corrupt or unreadable image"),
            (llamafactory(96, images=["corrupt.png"]), "corrupt or unreadable image"),
            (llamafactory(97, images=["bomb.png"]), "image too large to decode"),
            (llamafactory(98, images=[]), "image placeholder count mismatch"),
            (llamafactory(99, rejected=""), "empty response in field 'rejected'"),
            (
                llamafactory(100, chosen={"from": "gpt", "value": "  \n\t "}),
                "empty response in field 'chosen'",
            ),
            (llamafactory(101, rejected="The shape is red, case 101."), "chosen == rejected"),
        ],
    ),
}


def write_lines(path, lines):
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def convert_cli(source, inp, out, *extra):
    return cli(
        "data", "convert", "--source", source, "--input", inp, "--out", out, "--format", "jsonl", *extra
    )


def by_cause(bad) -> dict[str, int]:
    return dict(Counter(cause for _, cause in bad))


def written_ids(out) -> list[str]:
    return [p.id for p in open_pairs(out)]


@pytest.mark.parametrize("source", list(IMPORT_FORMATS))
def test_import_format_fails_on_each_bad_record_naming_file_line_and_cause(media, source):
    make, _, bad = IMPORT_FORMATS[source]
    for k, (line, cause) in enumerate(bad):
        path = write_lines(media / f"{source}-fail-{k}.jsonl", [make(0), line, make(1)])
        out = media / f"{source}-fail-{k}.out"
        rc, result, err = convert_cli(source, path, out)
        assert rc == 1 and result is None, (k, err)
        assert f"[{source}] {path}:2" in err, (k, err)  # the bad record is on line 2
        assert cause in err, (k, err)
        assert not (out / "basereward_pairs.json").exists()  # nothing that looks complete is left behind


@pytest.mark.parametrize("source", list(IMPORT_FORMATS))
def test_import_format_skip_counts_each_bad_record_by_cause_and_writes_every_good_row(media, source):
    make, ids, bad = IMPORT_FORMATS[source]
    # good rows before, between and after the bad ones: none may be lost
    lines = [make(0), *(line for line, _ in bad[:4]), make(1), *(line for line, _ in bad[4:]), make(2)]
    path = write_lines(media / f"{source}-skip.jsonl", lines)
    out = media / f"{source}-skip.out"
    rc, result, err = convert_cli(source, path, out, "--on-error", "skip")
    assert rc == 0, err
    assert result["skipped"] == by_cause(bad)
    assert sum(result["skipped"].values()) == len(bad) and result["dropped"] == {}
    assert (result["rows_read"], result["rows_converted"], result["pairs"]) == (len(bad) + 3, 3, 3)
    assert written_ids(out) == ids
    # the count is kept with the data
    manifest = json.loads((out / "basereward_pairs.json").read_text())
    assert manifest["convert"]["skipped"] == by_cause(bad)
    # the first examples locate their records: the first bad record is line 2 of the file
    assert result["skip_examples"][0].startswith(f"[{source}] {path}:2")


# --- a public source: VLFeedback (JSONL + an image folder) -----------------------------------------------------


def vlfeedback(i, **kw) -> bytes:
    def completion(model, text, rating):
        return {"model": model, "response": text, "annotations": {"Helpfulness": {"Rating": rating}}}

    rec = {
        "id": f"v{i}",
        "prompt": "What colour is the shape?",
        "models": ["a", "b"],
        "img_path": "ok.png",
        "completions": [
            completion("a", f"The shape is red, case {i}.", "5"),
            completion("b", "The shape is blue.", "2"),
        ],
    }
    rec.update(kw)
    return json.dumps(rec).encode()


def _two(chosen, rejected):
    return [
        {"model": "a", "response": chosen, "annotations": {"Helpfulness": {"Rating": "5"}}},
        {"model": "b", "response": rejected, "annotations": {"Helpfulness": {"Rating": "2"}}},
    ]


VLF_BAD = [
    (vlfeedback(91)[:-9], "malformed JSON"),
    (vlfeedback(92).replace(b"blue", b"bl\xffue"), "invalid UTF-8"),
    (vlfeedback(93, completions={"a": 1}), "field 'completions' must be a list"),
    (vlfeedback(94, completions=[5, 6]), "field 'completions' must be a list of objects"),
    (vlfeedback(95, prompt=7), "field 'prompt' must be a non-empty string"),
    (vlfeedback(96, img_path="missing.png"), "missing image"),
    (vlfeedback(97, img_path="empty.png"), "corrupt or unreadable image"),
    (vlfeedback(98, img_path="corrupt.png"), "corrupt or unreadable image"),
    (vlfeedback(99, img_path="bomb.png"), "image too large to decode"),
]
# The source's documented rules (docs/datasets.md §2.3b): a completion with an empty response is unscored, so a
# row left with one is dropped; identical texts make a pair with no preference, dropped too; the prompt's tags
# are normalised to the one image, never an error.
VLF_DROPPED = [
    (vlfeedback(81, completions=_two("The shape is red.", "")), "fewer than 2 scored completions"),
    (vlfeedback(82, completions=_two("  \n\t ", "The shape is blue.")), "fewer than 2 scored completions"),
    (vlfeedback(83, completions=_two("The shape is red.", "The shape is red.")), "chosen == rejected"),
]
VLF_NORMALISED = vlfeedback(84, prompt="<image><image>\nWhat colour is the shape?")


def test_public_source_fails_on_each_bad_record_naming_file_line_and_cause(media):
    for k, (line, cause) in enumerate(VLF_BAD):
        path = write_lines(media / f"vlf-fail-{k}.jsonl", [vlfeedback(0), line, vlfeedback(1)])
        rc, result, err = convert_cli("vlfeedback", path, media / f"vlf-fail-{k}.out", "--images", media)
        assert rc == 1 and result is None, (k, err)
        assert f"[vlfeedback] {path}:2: {cause}" in err, (k, err)


def test_public_source_skip_counts_bad_records_and_drops_by_its_rules(media):
    lines = [
        vlfeedback(0),
        *(line for line, _ in VLF_BAD[:5]),
        *(line for line, _ in VLF_DROPPED),
        vlfeedback(1),
        *(line for line, _ in VLF_BAD[5:]),
        VLF_NORMALISED,
        vlfeedback(2),
    ]
    path = write_lines(media / "vlf-skip.jsonl", lines)
    out = media / "vlf-skip.out"
    rc, result, err = convert_cli("vlfeedback", path, out, "--images", media, "--on-error", "skip")
    assert rc == 0, err
    assert result["skipped"] == by_cause(VLF_BAD)
    assert result["dropped"] == by_cause(VLF_DROPPED)
    assert result["rows_read"] == len(lines) and result["pairs"] == 4
    pairs = list(open_pairs(out))
    assert [p.id for p in pairs] == [
        "vlfeedback:v0:0",
        "vlfeedback:v1:0",
        "vlfeedback:v84:0",
        "vlfeedback:v2:0",
    ]
    assert pairs[2].prompt[0]["content"] == "<image>\nWhat colour is the shape?"  # two tags, one image: one
    # the dropped rows alone never fail the default policy: they are the source's rules, not bad input
    ok = write_lines(media / "vlf-dropped.jsonl", [vlfeedback(0), *(line for line, _ in VLF_DROPPED)])
    rc, result, err = convert_cli("vlfeedback", ok, media / "vlf-dropped.out", "--images", media)
    assert rc == 0, err
    assert result["dropped"] == by_cause(VLF_DROPPED) and result["pairs"] == 1


# --- a public source with embedded images: RLAIF-V parquet ----------------------------------------------------


def rlaif(i, **kw) -> dict:
    row = {
        "ds_name": "RLAIF-V",
        "image": {"bytes": png(i), "path": None},
        "question": "What colour is the shape?",
        "chosen": f"The shape is red, case {i}.",
        "rejected": "The shape is blue.",
        "origin_dataset": "COCO",
        "origin_split": "train",
        "idx": str(i),
        "image_path": f"{i}.png",
    }
    row.update(kw)
    return row


RLAIF_BAD = [
    (rlaif(91, question=None), "missing required field 'question'"),
    (
        rlaif(92, image={"bytes": b"", "path": None}),
        "corrupt or unreadable image",
    ),  # was "missing ... 'image'"
    (rlaif(93, image={"bytes": png(1)[:40] + b"\x00" * 64, "path": None}), "corrupt or unreadable image"),
    (rlaif(94, image={"bytes": png_header(100_000, 100_000), "path": None}), "image too large to decode"),
]
RLAIF_DROPPED = [
    (rlaif(81, chosen=""), "empty chosen"),
    (rlaif(82, rejected=" \n"), "empty rejected"),
    (rlaif(83, rejected="The shape is red, case 83. "), "chosen == rejected"),
]


def test_rlaif_v_parquet_bad_rows_fail_by_row_and_skip_by_cause(tmp_path):
    for k, (row, cause) in enumerate(RLAIF_BAD):
        src = write_parquet(tmp_path / f"fail-{k}.parquet", [rlaif(0), row, rlaif(1)])
        rc, _, err = convert_cli("rlaif-v", src, tmp_path / f"fail-{k}.out")
        assert rc == 1 and f"[rlaif-v] {src} row 1: {cause}" in err, (k, err)
    rows = [rlaif(0), *(r for r, _ in RLAIF_BAD[:2]), rlaif(1), *(r for r, _ in RLAIF_BAD[2:]), rlaif(2)]
    rows += [r for r, _ in RLAIF_DROPPED]
    src = write_parquet(tmp_path / "all.parquet", rows)
    rc, result, err = convert_cli("rlaif-v", src, tmp_path / "all.out", "--on-error", "skip")
    assert rc == 0, err
    assert result["skipped"] == by_cause(RLAIF_BAD) and result["dropped"] == by_cause(RLAIF_DROPPED)
    assert written_ids(tmp_path / "all.out") == ["rlaif_v:0:0", "rlaif_v:1:0", "rlaif_v:2:0"]


def test_rlaif_v_json_export_with_base64_image_bytes(tmp_path):
    # a JSON export of the parquet rows carries the image as base64 text; it used to fail as a "malformed row"
    rows = [rlaif(i) for i in range(2)]
    for r in rows:
        r["image"] = {"bytes": base64.b64encode(r["image"]["bytes"]).decode(), "path": None}
    rows[1]["image"]["bytes"] = "not base64!"
    src = tmp_path / "rlaif.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc, result, err = convert_cli("rlaif-v", src, tmp_path / "out", "--on-error", "skip")
    assert rc == 0, err
    assert result["skipped"] == {"field 'image' bytes are not valid base64": 1}
    (pair,) = open_pairs(tmp_path / "out")
    assert pair.id == "rlaif_v:0:0" and pair.images[0].load().size == (32, 32)
