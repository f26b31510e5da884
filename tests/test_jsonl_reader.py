"""The one JSON record reader (basereward/data/jsonl.py): pair files, raw public datasets and benchmark files report
a broken record in the same `file:line: message` form, and the reader itself locates lines and array items."""

import json

import pytest

from basereward.data.benchmarks import load_benchmark
from basereward.data.convert import convert
from basereward.data.io import LoadStats, read_pairs
from basereward.data.jsonl import read_json, scan_json
from basereward.types import DataError

GOOD = {"id": "a", "prompt": "Hi", "chosen": "Hello.", "rejected": "Go away."}

BROKEN = [
    (b'{"id": "x", "prompt": \n', "malformed JSON: Expecting value at column 24"),
    (b'{"id": "\xff"}\n', "invalid UTF-8: bad byte at column 9"),
    (b'"just text"\n', "a record must be a JSON object, got str"),
    # json's own message here ends in "at"
    (b'{"id": "a\tb"}\n', "malformed JSON: Invalid control character at column 10"),
]


def _message(err: DataError, path) -> str:
    """The error from the file's name on: a converter's message starts with its `[source]` label."""
    text = str(err)
    assert str(path) in text, text
    return text[text.index(str(path)) :]


@pytest.mark.parametrize("line, what", BROKEN, ids=["json", "utf8", "not-object", "control-char"])
def test_the_three_readers_report_the_same_file_line_form(tmp_path, line, what):
    path = tmp_path / "data.jsonl"
    # line 1 blank: line 2 is the first record
    path.write_bytes(b"\n" + line + json.dumps(GOOD).encode() + b"\n")
    expected = f"{path}:2: {what}"

    with pytest.raises(DataError) as pair_err:
        read_pairs(path)
    with pytest.raises(DataError) as source_err:
        convert("pairs", path, tmp_path / "out")
    with pytest.raises(DataError) as bench_err:
        load_benchmark("vl-rewardbench", path)
    assert str(pair_err.value) == expected
    assert str(source_err.value) == f"[pairs] {expected}"
    assert {_message(e.value, path) for e in (pair_err, source_err, bench_err)} == {expected}


def test_skip_policy_counts_each_broken_line_once_by_reason(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"".join(line for line, _ in BROKEN) + json.dumps(GOOD).encode() + b"\n")
    stats = LoadStats()
    assert [p.id for p in read_pairs(path, on_error="skip", stats=stats)] == ["a"]
    assert stats.lines == 5 and stats.kept == 1
    assert stats.skipped == {
        "malformed JSON": 2,
        "invalid UTF-8": 1,
        "a record must be a JSON object, got str": 1,
    }
    report = convert("pairs", path, tmp_path / "out", on_error="skip")
    assert report["pairs"] == 1 and sum(report["skipped"].values()) == 4


def test_json_array_items_are_located_by_line_and_index(tmp_path):
    path = tmp_path / "all.json"
    path.write_text('[\n  {"a": 1},\n\n  "text",\n  {"b":\n     2}\n]\n')
    recs = list(scan_json(path))
    assert [r.where for r in recs] == [f"{path}:2 item 0", f"{path}:4 item 1", f"{path}:5 item 2"]
    assert recs[0].value == {"a": 1} and recs[2].value == {"b": 2}
    assert str(recs[1].value) == f"{path}:4 item 1: a record must be a JSON object, got str"
    with pytest.raises(DataError, match=r"all\.json:4 item 1: a record must be a JSON object"):
        list(read_json(path))


@pytest.mark.parametrize(
    "text, message",
    [
        ('[\n {"a": 1},\n {"b": }\n]', r"x\.json:3: malformed JSON array: Expecting value"),
        ('[\n {"a": 1}\n {"b": 2}\n]', r"x\.json:3: malformed JSON array: expected ',' or '\]'"),
        ('[{"a": 1}]\n]', r"x\.json:2: malformed JSON array: extra data"),
        ('[{"a": 1},]', r"x\.json:1: malformed JSON array: Expecting value"),
    ],
)
def test_a_broken_array_fails_before_any_item(tmp_path, text, message):
    path = tmp_path / "x.json"
    path.write_text(text)
    records = scan_json(path)
    with pytest.raises(DataError, match=message):
        next(records)


def test_line_numbers_offsets_and_byte_order_mark(tmp_path):
    path = tmp_path / "bom.jsonl"
    body = b'\xef\xbb\xbf{"i": 0}\n\n{"i": 1}\n'
    path.write_bytes(body)
    recs = list(scan_json(path))
    assert [(r.where, r.value) for r in recs] == [(f"{path}:1", {"i": 0}), (f"{path}:3", {"i": 1})]
    for r in recs:  # an offset re-reads its line alone, as the lazy training index does
        assert json.loads(body[r.offset :].split(b"\n", 1)[0]) == r.value
    empty = tmp_path / "empty.json"
    empty.write_text(" [ ] ")
    assert list(scan_json(empty)) == []
    with pytest.raises(DataError, match=r"nope\.jsonl: data file not found"):
        list(scan_json(tmp_path / "nope.jsonl"))
