"""`torchrun -m basereward eval|score` on 2 processes (gloo, CPU) gives what one process gives: the same metrics and
report, the same score file byte for byte, and one JSON line; a bad image, or a failure met by one rank
mid-scoring, stops every rank.

13 pairs (10 with an image, 3 text-only) in units of 3 make 5 units, so one rank scores a padding unit; units of 2
make 7. The one-process runs use one thread, as torchrun gives each rank: the thread count changes CPU rounding.
"""

import json

import pytest
import torch
from dist_utils import torchrun

from basereward.cli import main
from basereward.data.io import read_pairs
from basereward.data.synthetic import synthesize
from basereward.eval.synthetic_sets import write_vl_rewardbench
from basereward.model.processor import load_processor
from basereward.model.reward_model import RewardModel

RUN_KEYS = {"pairs_per_s", "world_size", "report", "output"}  # differ by design between the two runs


@pytest.fixture(scope="module")
def root(tiny_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("dist_eval")
    model = RewardModel.from_backbone(tiny_dirs["qwen2_5_vl"], seed=2)
    model.reward_stats = {"mean": 0.1, "std": 2.0, "n": 10, "split": "validation"}
    model.save(root / "rm", load_processor(tiny_dirs["qwen2_5_vl"], "qwen2_5_vl"))
    synthesize(root / "d", pairs=1, eval_pairs=13, seed=1)
    pairs = read_pairs(root / "d" / "test.jsonl")
    assert len(pairs) == 13 and sum(not p.images for p in pairs) == 3
    write_vl_rewardbench([p for p in pairs if p.images], root / "vl")
    return root


def one_process(capsys, argv: list) -> tuple[dict, str]:
    """`basereward ARGV` in this process on one thread: (result JSON, stdout)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([str(a) for a in argv]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    return json.loads(out.strip().splitlines()[-1]), out


def two_ranks(argv: list) -> tuple[dict, str]:
    proc = torchrun(argv, nproc=2, timeout=180)
    assert proc.returncode == 0, proc.stderr[-12000:]
    json_lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(json_lines) == 1 and proc.stdout.strip().splitlines()[-1] == json_lines[0]  # rank 0 only
    return json.loads(json_lines[0]), proc.stdout


def without(d: dict, keys) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


@pytest.mark.parametrize(
    ("benchmark", "data"), [("pairs", "d/test.jsonl"), ("vl-rewardbench", "vl/data.jsonl")]
)
def test_two_rank_eval_equals_one_process(root, capsys, benchmark, data):
    argv = [
        "eval",
        "--benchmark",
        benchmark,
        "--data",
        root / data,
        "--model",
        root / "rm",
        "--batch-size",
        3,
    ]
    one, out1 = one_process(capsys, [*argv, "--out", root / f"one-{benchmark}"])
    two, out2 = two_ranks([*argv, "--out", root / f"two-{benchmark}"])
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert without(two, RUN_KEYS) == without(one, RUN_KEYS)
    # the report: metrics.json equal except the timing; the Markdown tables printed once, by rank 0
    doc1, doc2 = (
        json.loads((root / f"{w}-{benchmark}" / "metrics.json").read_text()) for w in ("one", "two")
    )
    assert doc2["timing"]["world_size"] == 2 and without(doc2, {"timing"}) == without(doc1, {"timing"})
    md1, md2 = ((root / f"{w}-{benchmark}" / "report.md").read_text() for w in ("one", "two"))
    assert md2 == md1
    assert out2.count("| length (baseline) |") == out1.count("| length (baseline) |") == 1


def test_two_rank_score_file_is_byte_identical(root, capsys):
    argv = ["score", "--model", root / "rm", "--input", root / "d" / "test.jsonl", "--batch-size", 2]
    one, _ = one_process(capsys, [*argv, "--output", root / "one.jsonl"])
    two, _ = two_ranks([*argv, "--output", root / "two.jsonl"])
    assert (root / "two.jsonl").read_bytes() == (root / "one.jsonl").read_bytes()
    assert len((root / "two.jsonl").read_text().splitlines()) == two["n"] == 13
    assert without(two, RUN_KEYS) == without(one, RUN_KEYS) and two["world_size"] == 2
    assert not (root / "two.jsonl.tmp").exists()


def test_a_bad_image_stops_every_rank_before_scoring(root):
    """Every image is verified before the process group is joined (eval's check_media), on every rank alike: a
    corrupt one in rank 1's unit stops both ranks with the same located line, and nothing is written."""
    bad = root / "vl-bad"
    bad.mkdir()
    rows = [json.loads(line) for line in (root / "vl" / "data.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):
        src = root / "vl" / row["image_path"]
        (bad / row["image_path"]).parent.mkdir(parents=True, exist_ok=True)
        (bad / row["image_path"]).write_bytes(b"not a png" if i == 4 else src.read_bytes())
    (bad / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["eval", "--benchmark", "vl-rewardbench", "--data", bad / "data.jsonl", "--model", root / "rm"]
    proc = torchrun([*argv, "--batch-size", 3, "--out", root / "bad-report"], nproc=2, timeout=180)
    assert proc.returncode != 0
    # the two ranks write to one stderr: their lines may interleave, so split on the message prefix, not on lines
    errors = [
        "basereward eval: error:" + e.split("\n")[0] for e in proc.stderr.split("basereward eval: error:")[1:]
    ]
    assert len(errors) == 2, proc.stderr[-3000:]
    assert all(f"data.jsonl:5 id={rows[4]['id']}: corrupt or unreadable image" in e for e in errors), errors
    assert "{" not in proc.stdout and not (root / "bad-report").exists()


FAIL_ON_RANK_1 = """
from basereward import distributed
from basereward.eval.distributed_scoring import join, score_sharded
from basereward.types import DataError

join()
rank = distributed.current().rank


def score(batch):
    if rank == 1:  # as when an image goes missing after the check, mid-run
        raise DataError("data.jsonl:5: image file not found: x.png")
    return [0.0] * len(batch)


try:
    score_sharded(list(range(6)), score, 3, "t", progress=False)
    print(f"rank {rank}: finished", flush=True)
except DataError as e:
    print(f"rank {rank}: {e}", flush=True)
"""


def test_a_failure_mid_scoring_on_one_rank_stops_both(tmp_path):
    """A DataError met by one rank while scoring (not caught by the checks before it) stops every rank at the
    gather instead of leaving them waiting: the failing rank with its own error, the other pointing to it."""
    import os
    import subprocess
    import sys

    script = tmp_path / "fail.py"
    script.write_text(FAIL_ON_RANK_1)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # both ranks print to one stdout, so their lines may run together: look for each message, not for lines
    assert "rank 0: scoring failed on 1 other rank(s); see their error in this log" in proc.stdout, (
        proc.stdout
    )
    assert "rank 1: data.jsonl:5: image file not found: x.png" in proc.stdout, proc.stdout
    assert "finished" not in proc.stdout
