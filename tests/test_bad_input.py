"""One bad-input policy for pair files, end to end through `basereward score`: with `--on-error fail` the first
bad record stops the run naming `file:line`; with `--on-error skip` every bad record is skipped, counted by cause
in the result JSON, and only the good pairs are scored. The bad records are the ones users meet: a truncated line,
invalid UTF-8, wrong JSON types, a missing / zero-byte / corrupt image, a decompression bomb (a small PNG whose
header declares 100,000 x 100,000 pixels, refused from the header), a tag count that does not match the images,
empty and whitespace-only responses, a chosen equal to the rejected."""

import json

import pytest
from data_fixtures import png
from serve_fixtures import make_reward_model
from test_image_verify import png_header

from basereward.cli import main as cli_main


def record(i, **kw):
    rec = {
        "id": f"r{i}",
        "prompt": [{"role": "user", "content": "<image>\nWhat colour is the shape?"}],
        "images": [{"path": "ok.png"}],
        "chosen": "The shape is red.",
        "rejected": "The shape is blue.",
    }
    rec.update(kw)
    return json.dumps(rec).encode()


# (line bytes, the cause the skip is counted under)
BAD = [
    (record(1)[:-9], "malformed JSON"),
    (record(2).replace(b"blue", b"bl\xffue"), "invalid UTF-8"),
    (record(3, chosen=5), "field 'chosen' must be a string, got int"),
    (record(4, images=[{"path": "missing.png"}]), "image file not found"),
    (record(5, images=[{"path": "empty.png"}]), "corrupt or unreadable image"),
    (record(6, images=[{"path": "corrupt.png"}]), "corrupt or unreadable image"),
    # PIL's own header check (2 x its 89 MP limit) fires before ours at this size; either way nothing is decoded
    (record(7, images=[{"path": "bomb.png"}]), "image too large to decode"),
    (record(8, images=[]), "image placeholder count mismatch"),
    (record(9, rejected=""), "empty response in field 'rejected'"),
    (record(10, chosen="  \n\t "), "empty response in field 'chosen'"),
    (record(11, rejected="The shape is red. "), "chosen == rejected"),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    rm = make_reward_model(root)
    data = root / "data"
    data.mkdir()
    (data / "ok.png").write_bytes(png(0))
    (data / "empty.png").write_bytes(b"")
    (data / "corrupt.png").write_bytes(png(1)[:40] + b"\x00" * 64)
    bomb = png_header(100_000, 100_000)
    assert len(bomb) < 100  # a header, no pixels: refusing it must not decode anything
    (data / "bomb.png").write_bytes(bomb)
    good = [record(100 + i, chosen=f"The shape is red, case {i}.") for i in range(3)]
    lines = [good[0], *(line for line, _ in BAD), good[1], good[2]]
    (data / "pairs.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return rm, data


def test_fail_stops_at_the_first_bad_record_naming_file_and_line(setup, capsys):
    rm, data = setup
    code = cli_main(["score", "--model", str(rm), "--input", str(data / "pairs.jsonl")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{data / 'pairs.jsonl'}:2: malformed JSON" in err  # line 1 is good; line 2 the truncated one
    assert not (data / "pairs.scores.jsonl").exists()


def test_skip_counts_every_bad_record_by_cause_and_scores_the_rest(setup, capsys):
    rm, data = setup
    out = data / "skip.scores.jsonl"
    code = cli_main(
        ["score", "--model", str(rm), "--input", str(data / "pairs.jsonl"), "--output", str(out)]
        + ["--on-error", "skip"]
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    assert result["skipped"] == len(BAD) and result["n"] == 3
    expected: dict[str, int] = {}
    for _, cause in BAD:
        expected[cause] = expected.get(cause, 0) + 1
    assert result["skipped_by_reason"] == expected
    scored = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert scored == ["r100", "r101", "r102"]
