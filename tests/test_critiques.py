"""Critiques in the pair record (`chosen_critique` / `rejected_critique`, docs/datasets.md §1): JSONL read and
write, shard folders of both formats (and folders written before the columns existed), the MM-RLHF and `pairs`
converters, and the critiques `data synth` writes from its own truth."""

import json

import numpy as np
import pyarrow as pa
import pytest
from data_fixtures import convert, png, write_jsonl
from test_data_sources_mm import _mm_rlhf_folder

from basereward.data import shards
from basereward.data.io import read_pairs, write_pairs
from basereward.data.mixture import build
from basereward.data.recipe import Recipe, SourceSpec
from basereward.data.shard_reader import ShardDir, ShardedPairs
from basereward.data.shards import SCHEMA, ShardWriter
from basereward.data.store import open_pairs
from basereward.data.synthetic import COLOURS, synthesize
from basereward.types import DataError, ImageRef, PreferencePair

OLD_SCHEMA = pa.schema([f for f in SCHEMA if f.name not in ("chosen_critique", "rejected_critique")])


def _rec(i, **kw):
    return {
        "id": f"r:{i}",
        "prompt": [{"role": "user", "content": f"question {i}"}],
        "chosen": f"good {i}",
        "rejected": f"bad {i}",
        **kw,
    }


def _pairs(n, critiques=True):
    return [
        PreferencePair(
            id=f"p:{i}",
            source="s",
            prompt=[{"role": "user", "content": ("<image>\n" if i % 2 else "") + f"q{i}"}],
            chosen=f"c{i}",
            rejected=f"r{i}",
            images=[ImageRef(data=png(i, 8))] if i % 2 else [],
            # every third pair has none, one has only the rejected side's: rows mix set and null values
            chosen_critique=f"c{i} is right" if critiques and i % 3 and i != 4 else None,
            rejected_critique=f"r{i} is wrong" if critiques and i % 3 else None,
            meta={"i": i},
        )
        for i in range(n)
    ]


def _critiques(pairs):
    return [(p.id, p.chosen_critique, p.rejected_critique) for p in pairs]


# ---- JSONL -------------------------------------------------------------------------------------------------


def test_jsonl_round_trip_and_keys_written_only_when_set(tmp_path):
    pairs = _pairs(7)
    write_pairs(tmp_path / "p.jsonl", pairs)
    back = read_pairs(tmp_path / "p.jsonl")
    assert _critiques(back) == _critiques(pairs)
    assert _critiques(back)[4] == ("p:4", None, "r4 is wrong")
    lines = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert lines[1]["chosen_critique"] == "c1 is right" and lines[1]["rejected_critique"] == "r1 is wrong"
    # a pair without critiques is written exactly as before the fields existed: no null keys
    assert "chosen_critique" not in lines[0] and "rejected_critique" not in lines[0]
    assert "chosen_critique" not in lines[4] and lines[4]["rejected_critique"] == "r4 is wrong"


def test_jsonl_blank_and_null_critiques_read_as_absent(tmp_path):
    write_jsonl(
        tmp_path / "p.jsonl",
        [
            _rec(0, chosen_critique="", rejected_critique="   \n"),
            _rec(1, chosen_critique=None, rejected_critique="  spaces kept around text "),
            _rec(2),
        ],
    )
    got = _critiques(read_pairs(tmp_path / "p.jsonl"))
    assert got == [("r:0", None, None), ("r:1", None, "  spaces kept around text "), ("r:2", None, None)]


@pytest.mark.parametrize(
    "field, value, kind",
    [("chosen_critique", 3, "int"), ("rejected_critique", ["a"], "list"), ("rejected_critique", {}, "dict")],
)
def test_jsonl_bad_critique_type_names_file_line_and_field(tmp_path, field, value, kind):
    path = write_jsonl(tmp_path / "p.jsonl", [_rec(0), _rec(1, **{field: value})])
    with pytest.raises(DataError, match=rf"p\.jsonl:2: field '{field}' must be a string or null, got {kind}"):
        read_pairs(path)
    assert [p.id for p in read_pairs(path, on_error="skip")] == ["r:0"]  # the skip policy applies too


# ---- shard folders -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_jsonl_to_shards_to_pairs_keeps_critiques(tmp_path, fmt):
    pairs = _pairs(9)
    write_pairs(tmp_path / "p.jsonl", pairs)
    report, back = convert("pairs", tmp_path / "p.jsonl", tmp_path / "d", "--format", fmt)
    assert report["pairs"] == 9
    assert _critiques(back) == _critiques(pairs)
    ds = ShardedPairs(tmp_path / "d")
    assert (ds[5].chosen_critique, ds[5].rejected_critique) == ("c5 is right", "r5 is wrong")
    taken = ShardDir(tmp_path / "d").take(np.array([5, 0]), columns=["id", "chosen_critique"])
    assert taken.to_pylist() == [
        {"id": "p:5", "chosen_critique": "c5 is right"},
        {"id": "p:0", "chosen_critique": None},
    ]
    if fmt == "arrow":  # the folder is still a `datasets.save_to_disk` folder, now with the two columns
        import datasets

        d = datasets.load_from_disk(str(tmp_path / "d"))
        assert d[2]["rejected_critique"] == "r2 is wrong" and d[3]["chosen_critique"] is None
        assert d.features["chosen_critique"].dtype == "string"


def _old_folder(path, fmt, pairs, monkeypatch):
    """A shard folder as written before the critique columns existed: the writer with the old SCHEMA."""
    with monkeypatch.context() as m:
        m.setattr(shards, "SCHEMA", OLD_SCHEMA)
        with ShardWriter(path, fmt=fmt, batch_rows=4) as w:
            for p in pairs:
                w.write(p)
            w.close()
    return path


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_old_shard_folders_still_read_take_and_rewrite(tmp_path, fmt, monkeypatch):
    pairs = _pairs(10)
    old = _old_folder(tmp_path / "old", fmt, pairs, monkeypatch)
    sd = ShardDir(old)
    file_schema = (
        pa.ipc.open_stream(pa.memory_map(str(sd.files[0]))).schema
        if fmt == "arrow"
        else pa.parquet.read_schema(sd.files[0])
    )
    assert "chosen_critique" not in file_schema.names  # really the old layout on disk
    if fmt == "arrow":
        features = json.loads((old / "dataset_info.json").read_text())["features"]
        assert "chosen_critique" not in features
        import datasets

        assert datasets.load_from_disk(str(old))[3]["id"] == "p:3"  # still consistent with its own files

    ds = ShardedPairs(old)
    assert len(ds) == 10 and ds[7].chosen == "c7" and ds[7].images[0].data == png(7, 8)
    assert _critiques(ds) == [(p.id, None, None) for p in pairs]  # indexing and iteration
    assert [b.schema for b in sd.iter_batches()] == [SCHEMA] * sd.num_batches
    taken = sd.take(np.array([9, 2, 2, 5]))
    assert taken.schema == SCHEMA and taken.column("id").to_pylist() == ["p:9", "p:2", "p:2", "p:5"]
    assert taken.column("rejected_critique").null_count == 4
    assert sd.take(np.array([1]), columns=["rejected_critique"]).to_pylist() == [{"rejected_critique": None}]

    # re-writing: batches as the reader gives them, a raw old-schema table (what `b.cast(SCHEMA)` refused),
    # and new batches with critiques, all into one folder
    raw_old = pa.Table.from_pylist(
        [shards.pair_to_row(p, old, "bytes", old, set()) for p in pairs[:3]], schema=OLD_SCHEMA
    )
    with ShardWriter(tmp_path / "new", fmt=fmt) as w:
        for b in sd.iter_batches():
            w.write_batch(b)
        w.write_batch(raw_old)
        w.write_batch(taken)
        for p in _pairs(2):
            w.write(p)
        manifest = w.close()
    assert manifest["rows"] == 10 + 3 + 4 + 2
    got = list(ShardedPairs(tmp_path / "new"))
    assert [p.id for p in got[:10]] == [p.id for p in pairs] and got[12].id == "p:2"
    assert all(p.chosen_critique is None for p in got[:17])
    assert _critiques(got[17:]) == [("p:0", None, None), ("p:1", "c1 is right", "r1 is wrong")]


def test_mixture_of_an_old_folder_and_a_critiqued_source(tmp_path, monkeypatch):
    """A build reads every source with `take` and writes one schema: an old folder mixes with a new one."""
    _old_folder(tmp_path / "old", "arrow", _pairs(6, critiques=False), monkeypatch)
    new = [
        PreferencePair(
            id=f"n:{i}",
            prompt=[{"role": "user", "content": f"new q{i}"}],
            chosen=f"yes {i}",
            rejected=f"no {i}",
            chosen_critique=f"yes {i}: right",
            rejected_critique=f"no {i}: wrong",
        )
        for i in range(5)
    ]
    write_pairs(tmp_path / "new.jsonl", new)
    recipe = Recipe(
        name="m", sources=(SourceSpec(name="old", path="old"), SourceSpec(name="new", path="new.jsonl"))
    )
    report = build(recipe, tmp_path / "m", root=tmp_path)
    assert report["rows"] == 11
    got = {p.id: p for p in open_pairs(tmp_path / "m")}
    assert got["n:3"].chosen_critique == "yes 3: right" and got["n:3"].rejected_critique == "no 3: wrong"
    assert got["p:1"].chosen_critique is None and got["p:1"].chosen == "c1"


# ---- converters --------------------------------------------------------------------------------------------


def test_mm_rlhf_reasons_become_critiques(tmp_path):
    root = _mm_rlhf_folder(tmp_path / "MM-RLHF")
    rows = [json.loads(x) for x in (root / "dpo_pairs.jsonl").read_text().splitlines()]
    rows[1].update(chosen_reason="   ", rejected_reason=7)  # blank and junk: no critique, the pair is kept
    write_jsonl(root / "dpo_pairs.jsonl", rows)
    _, pairs = convert("mm-rlhf-dpo", root, tmp_path / "out")
    assert _critiques(pairs) == [("mm_rlhf:0:0", "accurate", "wrong animal"), ("mm_rlhf:1:0", None, None)]
    # meta keeps the upstream fields as they were
    assert pairs[0].meta["rejected_reason"] == "wrong animal" and pairs[1].meta["rejected_reason"] == 7


def test_check_pair_refuses_a_non_string_critique_from_a_converter():
    from basereward.data.convert import check_pair

    pair = _pairs(1)[0]
    pair.rejected_critique = 3
    with pytest.raises(DataError, match="row 4: field 'rejected_critique' must be a string or null, got int"):
        check_pair(pair, "row 4")


# ---- data synth --------------------------------------------------------------------------------------------


def _lines(folder):
    return {s: (folder / f"{s}.jsonl").read_text() for s in ("train", "validation", "test")}


def test_synth_critiques_say_which_response_is_right(tmp_path):
    synthesize(tmp_path, pairs=200, eval_pairs=20, seed=4, text_share=0.2)
    pairs = read_pairs(tmp_path / "train.jsonl")
    kinds = set()
    for p in pairs:
        kinds.add(p.meta["kind"])
        c, r = p.chosen_critique, p.rejected_critique
        assert c.endswith(": correct.") and ": wrong, it is " in r, p.id
        truth, said = c.split("; the response says ")
        true_value = said.removesuffix(": correct.")
        wrong_value = r.split("; the response says ")[1].split(": wrong")[0]
        assert r.startswith(truth + ";") and r.endswith(f"wrong, it is {true_value}.")
        # each critique quotes the value its own response states, and the two differ
        assert true_value in p.chosen and wrong_value in p.rejected and true_value != wrong_value
        if p.meta["kind"] == "colour":
            # the named colour really is in the picture: the critique is grounded in the drawing
            colour = truth.split()[4]
            assert COLOURS[colour] in {rgb for _, rgb in p.images[0].load().getcolors(112 * 112)}
        if p.meta["kind"] == "position":
            img = np.asarray(p.images[0].load().convert("L"), dtype=int)
            dark = np.flatnonzero((img < 200).any(axis=0))  # shape columns (the background is >= 235)
            assert (dark.mean() < 56) == (truth.endswith("on the left")), p.id
        if p.meta["kind"] == "code":
            assert (
                truth == "The prompt gives the code " + p.prompt[0]["content"].split(" is ")[1].split(".")[0]
            )
    assert kinds == {"colour", "shape", "count", "position", "code"}


def test_synth_critiques_are_deterministic_and_leave_the_rest_unchanged(tmp_path, monkeypatch):
    synthesize(tmp_path / "a", pairs=60, eval_pairs=20, seed=3, text_kind="addition", text_share=0.3)
    synthesize(tmp_path / "b", pairs=60, eval_pairs=20, seed=3, text_kind="addition", text_share=0.3)
    assert _lines(tmp_path / "a") == _lines(tmp_path / "b")
    # with the critiques taken out, what synth writes is what it wrote before they existed: same RNG stream,
    # same images, same records (the critique keys are written only when set)
    from basereward.data import synthetic

    monkeypatch.setattr(synthetic, "_critiques", lambda truth, true, wrong: (None, None))
    synthesize(tmp_path / "plain", pairs=60, eval_pairs=20, seed=3, text_kind="addition", text_share=0.3)
    for split, text in _lines(tmp_path / "a").items():
        recs = [json.loads(x) for x in text.splitlines()]
        assert all(r["chosen_critique"] and r["rejected_critique"] for r in recs)
        stripped = "".join(
            json.dumps({k: v for k, v in r.items() if not k.endswith("_critique")}, ensure_ascii=False) + "\n"
            for r in recs
        )
        assert stripped == _lines(tmp_path / "plain")[split]
    for png_a in (tmp_path / "a" / "images").rglob("*.png"):
        assert png_a.read_bytes() == (tmp_path / "plain" / png_a.relative_to(tmp_path / "a")).read_bytes()
