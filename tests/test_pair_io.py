"""Pair JSONL: the record, relative/base64 images, mixed text+image files, and every bad-input error naming
file:line."""

import base64
import io
import json

import pytest
from PIL import Image

from basereward.data.io import LoadStats, read_pairs, write_pairs
from basereward.types import DataError


def png_bytes(colour="red", size=(32, 24)):
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def good(**kw):
    rec = {
        "id": "p1",
        "prompt": [{"role": "user", "content": "<image>\nWhat colour?"}],
        "images": [{"path": "img/a.png"}],
        "chosen": "Red.",
        "rejected": "Blue.",
    }
    rec.update(kw)
    return rec


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png_bytes())
    (tmp_path / "img" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    return tmp_path


def write_lines(path, lines):
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_reads_relative_paths_base64_and_text_only_in_one_file(folder):
    b64 = base64.b64encode(png_bytes("blue")).decode()
    f = write_lines(
        folder / "pairs.jsonl",
        [
            good(),
            {"id": "t1", "prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"},
            good(id="p2", images=[{"bytes": b64}]),
            good(id="p3", images=["img/a.png"]),
        ],
    )
    pairs = read_pairs(f)
    assert [p.id for p in pairs] == ["p1", "t1", "p2", "p3"]
    assert pairs[0].images[0].path == str(folder / "img" / "a.png")
    assert pairs[1].images == [] and pairs[1].prompt == [{"role": "user", "content": "What is 2 + 2?"}]
    assert pairs[2].images[0].load().getpixel((0, 0)) == (0, 0, 255)
    assert pairs[0].where == f"{f}:1"


def test_write_then_read_round_trip(folder, tmp_path):
    f = write_lines(
        folder / "pairs.jsonl", [good(), {"id": "t1", "prompt": "Hi", "chosen": "a", "rejected": "b"}]
    )
    pairs = read_pairs(f)
    out = tmp_path / "out" / "copy.jsonl"
    assert write_pairs(out, pairs, embed_images=True) == 2
    again = read_pairs(out)
    assert again[0].images[0].data == (folder / "img" / "a.png").read_bytes()
    assert [(p.id, p.prompt, p.chosen, p.rejected) for p in again] == [
        (p.id, p.prompt, p.chosen, p.rejected) for p in pairs
    ]


BAD = [
    ('{"id": "x", "prompt": ', "malformed JSON"),
    (good(chosen=None) | {"chosen": None}, "field 'chosen' must be a string"),
    ({k: v for k, v in good().items() if k != "rejected"}, "missing field 'rejected'"),
    (good(images=[{"path": "img/nope.png"}]), "image file not found"),
    (good(images=[{"path": "img/bad.png"}]), "corrupt or unreadable image"),
    (good(chosen="   "), "empty response in field 'chosen'"),
    (good(images=[{"path": "img/a.png"}, {"path": "img/a.png"}]), "placeholder count mismatch"),
    (good(images=[]), "placeholder count mismatch"),
    (good(images=[{"bytes": "!!!not base64"}]), "not valid base64"),
    (good(rejected="see <image>"), "contains an <image>"),
]


@pytest.mark.parametrize("record,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_names_file_and_line(folder, record, message):
    f = write_lines(
        folder / "pairs.jsonl", [good(), {"id": "t", "prompt": "x", "chosen": "a", "rejected": "b"}, record]
    )
    with pytest.raises(DataError) as err:
        read_pairs(f)
    assert f"{f}:3" in str(err.value)
    assert message in str(err.value)


def test_skip_policy_counts_and_keeps_the_good_lines(folder):
    f = write_lines(folder / "pairs.jsonl", [good(), "{oops", good(id="p2", chosen=""), good(id="p3")])
    stats = LoadStats()
    pairs = read_pairs(f, on_error="skip", stats=stats)
    assert [p.id for p in pairs] == ["p1", "p3"]
    assert stats.lines == 4 and stats.kept == 2 and stats.n_skipped == 2
    assert any(":2" in e for e in stats.examples) and any(":3" in e for e in stats.examples)


def test_indexed_jsonl_reads_the_same_pairs_and_keeps_only_offsets(folder):
    """Training opens JSONL as an index (`open_pairs(lazy=True)`): every record validated up front with file:line
    errors or counted skips, random access equal to a full load, image contents checked when a record is read."""
    from basereward.data.store import JsonlPairs, open_pairs

    recs = [good(id=f"p{i}", chosen=f"Red {i}.") for i in range(5)]
    recs[3]["meta"] = {"tie": True}
    path = write_lines(folder / "pairs.jsonl", [recs[0], "", recs[1], recs[2], recs[3], recs[4]])
    lazy = open_pairs(path, lazy=True)
    assert isinstance(lazy, JsonlPairs) and len(lazy) == 5
    full = read_pairs(path)
    assert [lazy[i].id for i in range(5)] == [p.id for p in full] and lazy[-1].chosen == "Red 4."
    assert lazy[2].where == f"{path}:4"  # the blank line 2 is skipped, line numbers are the file's
    assert [p.id for p in lazy.drop_ties()] == ["p0", "p1", "p2", "p4"]

    bad = write_lines(
        folder / "bad.jsonl", [recs[0], "{not json", good(id="x", images=[{"path": "img/bad.png"}])]
    )
    with pytest.raises(DataError, match=r"bad\.jsonl:2: malformed JSON"):
        open_pairs(bad, lazy=True)
    stats = LoadStats()
    skipping = open_pairs(bad, lazy=True, on_error="skip", stats=stats)
    assert len(skipping) == 2 and stats.n_skipped == 1
    with pytest.raises(DataError, match=r"bad\.jsonl:3 images\[0\]: corrupt or unreadable image"):
        skipping[1]  # the corrupt PNG is found when the record is read, not when the file is indexed

    raw = folder / "utf.jsonl"
    raw.write_bytes(json.dumps(recs[0]).encode() + b"\n" + b'{"id": "\xff\xfe"}\n')
    with pytest.raises(DataError, match=r"utf\.jsonl:2: invalid UTF-8"):
        open_pairs(raw, lazy=True)
    with pytest.raises(DataError, match=r"utf\.jsonl:2: invalid UTF-8"):
        read_pairs(raw)
