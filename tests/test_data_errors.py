"""Bad input: a missing required field, an unreadable or missing image, a malformed line. With the default
policy the conversion fails naming source, file and row; with `--on-error skip` the row is skipped and
counted; an interrupted conversion never damages a dataset already in --out."""

import json

import pytest
from data_fixtures import cli, png, write_jsonl, write_parquet

from basereward.data.convert import convert
from basereward.data.store import open_pairs
from basereward.types import DataError


def _rlaif(bad: dict, n: int = 3):
    rows = [
        {
            "ds_name": "RLAIF-V",
            "image": {"bytes": png(i), "path": None},
            "question": f"Q{i}?",
            "chosen": "c",
            "rejected": "r",
            "origin_dataset": "COCO",
            "origin_split": "x",
            "idx": str(i),
            "image_path": "p",
        }
        for i in range(n)
    ]
    rows[1].update(bad)
    return rows


@pytest.mark.parametrize(
    "bad, reason",
    [
        ({"question": None}, "missing required field 'question'"),
        ({"image": {"bytes": b"\x89PNG\r\n\x1a\n truncated", "path": None}}, "corrupt or unreadable image"),
    ],
)
def test_bad_row_fails_naming_source_file_row_then_skip_counts(tmp_path, bad, reason):
    src = write_parquet(tmp_path / "train.parquet", _rlaif(bad))
    rc, out, err = cli("data", "convert", "--source", "rlaif-v", "--input", src, "--out", tmp_path / "out")
    assert rc == 1 and out is None
    assert f"[rlaif-v] {src} row 1: {reason}" in err
    assert not (tmp_path / "out" / "basereward_pairs.json").exists()  # nothing that looks complete was left

    rc, out, err = cli(
        "data",
        "convert",
        "--source",
        "rlaif-v",
        "--input",
        src,
        "--out",
        tmp_path / "out",
        "--on-error",
        "skip",
    )
    assert rc == 0
    assert out["skipped"] == {reason: 1} and out["pairs"] == 2 and out["rows_read"] == 3
    assert f"row 1: {reason}" in out["skip_examples"][0]
    manifest = json.loads((tmp_path / "out" / "basereward_pairs.json").read_text())
    assert manifest["convert"]["skipped"] == {reason: 1}  # the count is kept with the data
    assert [p.id for p in open_pairs(tmp_path / "out")] == ["rlaif_v:0:0", "rlaif_v:2:0"]


def test_malformed_jsonl_line_and_missing_image_file(tmp_path):
    (tmp_path / "ok.png").write_bytes(png(1))
    good = {
        "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
        "rejected_response": "B",
        "images": ["ok.png"],
    }
    src = write_jsonl(tmp_path / "rm.jsonl", [good, "{not json", {**good, "images": ["gone.png"]}])
    with pytest.raises(DataError, match=rf"\[ms-swift-rm\] {src}:2: malformed JSON"):
        convert("ms-swift-rm", src, tmp_path / "out")
    report = convert("ms-swift-rm", src, tmp_path / "out", on_error="skip")
    assert report["skipped"] == {"malformed JSON": 1, "missing image": 1} and report["pairs"] == 1
    assert any(f"{src}:3" in e and "gone.png" in e for e in report["skip_examples"])


def test_existing_dataset_is_kept_until_a_replacement_is_complete(tmp_path):
    good = write_parquet(tmp_path / "good.parquet", _rlaif({}))
    bad = write_parquet(tmp_path / "bad.parquet", _rlaif({"chosen": None}))
    convert("rlaif-v", good, tmp_path / "out")
    with pytest.raises(DataError, match="already holds a dataset"):
        convert("rlaif-v", good, tmp_path / "out")
    with pytest.raises(DataError, match="missing required field 'chosen'"):
        convert("rlaif-v", bad, tmp_path / "out", overwrite=True)
    assert len(open_pairs(tmp_path / "out")) == 3  # the failed run did not touch it
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".partial")]


def test_skips_are_counted_in_the_mixture_stats(tmp_path):
    write_parquet(tmp_path / "raw" / "train.parquet", _rlaif({"question": None}))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\non_error: skip\nsources:\n  - {name: rlaif, converter: rlaif-v, path: raw}\n")
    rc, out, err = cli("data", "build", "--recipe", recipe, "--out", tmp_path / "mix", "--root", tmp_path)
    assert rc == 0, err
    assert out["convert"]["rlaif"]["skipped"] == {"missing required field 'question'": 1} and out["rows"] == 2
