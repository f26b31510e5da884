"""Shard folders: streaming writes across several files, random access and `take` by global row, pickling for
DataLoader workers, the 🤗 `datasets.load_from_disk` view of an Arrow folder, and `open_pairs` on every
form."""

import pickle

import numpy as np
import pytest
from data_fixtures import png

from basereward.data.io import write_pairs
from basereward.data.shard_reader import ShardDir, ShardedPairs
from basereward.data.shards import ShardWriter
from basereward.data.store import open_pairs
from basereward.types import DataError, ImageRef, PreferencePair


def _pairs(n):
    return [
        PreferencePair(
            id=f"p:{i}",
            source=f"s{i % 3}",
            prompt=[{"role": "user", "content": ("<image>\n" if i % 2 else "") + f"q{i}"}],
            chosen=f"c{i}",
            rejected=f"r{i}",
            images=[ImageRef(data=png(i % 5, 8))] if i % 2 else [],
            score_chosen=float(i),
            margin=0.5 if i % 4 == 0 else None,
            meta={"k": i, "nested": {"a": [1, 2]}},
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
def test_write_many_shards_then_random_access_and_take(tmp_path, fmt):
    pairs = _pairs(53)
    with ShardWriter(tmp_path / "d", fmt=fmt, shard_rows=20, batch_rows=7) as w:
        for p in pairs:
            w.write(p)
        manifest = w.close()
    assert [f["rows"] for f in manifest["files"]] == [21, 21, 11]  # rotation happens at batch boundaries
    assert manifest["sources"] == {"s0": 18, "s1": 18, "s2": 17} and manifest["image_rows"] == 26
    ds = ShardedPairs(tmp_path / "d")
    assert len(ds) == 53
    for i in (0, 6, 7, 20, 21, 52, -1):
        want = pairs[i]
        got = ds[i]
        assert (got.id, got.prompt, got.chosen, got.score_chosen, got.margin, got.meta) == (
            want.id,
            want.prompt,
            want.chosen,
            want.score_chosen,
            want.margin,
            want.meta,
        )
        assert [im.data for im in got.images] == [im.data for im in want.images]
    assert "row" in ds[30].where and ds[30].where.endswith("row 9")  # file-local row in error locations
    sd = ShardDir(tmp_path / "d")
    idx = np.array([52, 0, 21, 21, 7, 3])
    assert sd.take(idx, columns=["id"]).column("id").to_pylist() == [f"p:{i}" for i in idx]
    sd.release()
    assert sd.take(np.array([5]), columns=["id"]).column("id").to_pylist() == ["p:5"]  # re-maps after release
    with pytest.raises(IndexError):
        ds[53]


def test_pickles_for_dataloader_workers(tmp_path):
    with ShardWriter(tmp_path / "d", fmt="arrow") as w:
        for p in _pairs(5):
            w.write(p)
        w.close()
    ds = ShardedPairs(tmp_path / "d")
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone[3].id == "p:3" and clone[3].images[0].data == png(3, 8)


def test_arrow_folder_is_a_datasets_save_to_disk_folder(tmp_path):
    import datasets

    with ShardWriter(tmp_path / "d", fmt="arrow", shard_rows=2, batch_rows=2) as w:
        for p in _pairs(5):
            w.write(p)
        w.close()
    d = datasets.load_from_disk(str(tmp_path / "d"))
    assert d.num_rows == 5 and d[4]["id"] == "p:4" and d[1]["images"][0]["bytes"] == png(1, 8)


def test_open_pairs_forms(tmp_path):
    write_pairs(tmp_path / "p.jsonl", _pairs(3))
    assert [p.id for p in open_pairs(tmp_path / "p.jsonl")] == ["p:0", "p:1", "p:2"]  # JSONL file: unchanged
    with ShardWriter(tmp_path / "j", fmt="jsonl") as w:
        for p in _pairs(3):
            w.write(p)
        w.close()
    assert open_pairs(tmp_path / "j")[1].images[0].data == png(1, 8)
    with pytest.raises(DataError, match="not a pair JSONL file or a pair shard folder"):
        open_pairs(tmp_path / "nothing")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.parquet").write_bytes(b"junk")
    with pytest.raises(DataError, match="unreadable parquet shard"):
        open_pairs(tmp_path / "x")


def test_drop_ties_view_stays_on_disk(tmp_path):
    pairs = _pairs(6)
    pairs[2].meta["tie"] = True
    pairs[4].meta["tie"] = False
    with ShardWriter(tmp_path / "d", fmt="arrow", batch_rows=4) as w:
        for p in pairs:
            w.write(p)
        w.close()
    view = ShardedPairs(tmp_path / "d").drop_ties()
    assert len(view) == 5 and [p.id for p in view] == ["p:0", "p:1", "p:3", "p:4", "p:5"]
    assert view[2].id == "p:3" and pickle.loads(pickle.dumps(view))[-1].id == "p:5"
