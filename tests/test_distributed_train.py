"""Training on several processes (torchrun, gloo, one thread a rank) equals training on one, resumes across world
sizes, survives ranks with and without images, and ends when a rank dies or hangs.

The data is built so that in step 1 rank 0's micro-batches are all text-only while rank 1's all have images, and
the other way round in step 2: the mixed-modality case that hangs sharded training when ranks disagree on running
the vision tower. Weights are compared with AdamW eps 1e-6: AdamW divides each gradient element by its own running
magnitude, so with the default eps 1e-8 float-rounding noise on gradient elements near zero (different summation
order across ranks) becomes updates of up to the learning rate; the per-step losses are compared as they are.
"""

import json
import shutil
import subprocess
import sys
import time

import pytest
import torch
from dist_utils import torchrun
from safetensors.torch import load_file

from basereward.config import TrainConfig, load_config
from basereward.step_batches import StepBatches
from basereward.train import main as train_main

BATCH, MICRO, STEPS = 8, 2, 4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from basereward.data.synthetic import synthesize
    from basereward.tiny import init_tiny

    root = tmp_path_factory.mktemp("dist")
    init_tiny(root / "tiny", size="test", seed=0)
    synthesize(root / "syn", pairs=60, eval_pairs=12, seed=3, text_share=0.5, kinds=("colour",))
    recs = [json.loads(x) for x in (root / "syn" / "train.jsonl").read_text().splitlines()]
    img, txt = [r for r in recs if r["images"]], [r for r in recs if not r["images"]]
    n = 2 * BATCH  # one epoch = 2 steps; its permutation is fixed by the seed
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    out = [None] * n
    # step 1: rank 0 (positions 0-3) text, rank 1 (4-7) images; step 2 reversed
    for pos, i in enumerate(perm):
        out[i] = (txt if pos < 4 or pos >= 12 else img).pop()
    for r in out:
        for im in r["images"]:
            im["path"] = str((root / "syn" / im["path"]).resolve())
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out))
    return root


def overrides(data, out, **kw):
    base = {
        "model.backbone": data / "tiny",
        "data.train": data / "train.jsonl",
        "data.validation": data / "syn" / "validation.jsonl",
        "batch_size": BATCH,
        "micro_batch_size": MICRO,
        "max_steps": STEPS,
        "log_every": 1,
        "save_every": 2,
        "keep_checkpoints": 5,
        "progress": "false",
        "tensorboard": "false",
        "optim.lr": 1e-3,
        "optim.warmup_steps": 1,
        "optim.eps": 1e-6,
        "distributed.timeout_s": 60,
        "output_dir": out,
    }
    base.update(kw)
    return [f"{k}={v}" for k, v in base.items()]


def single(data, out, **kw) -> dict:
    return train_main(load_config(None, overrides(data, out, **kw)))


def launch(data, out, nproc=2, env=None, timeout=240, **kw):
    res = torchrun(["train", *overrides(data, out, **kw)], nproc=nproc, env=env, timeout=timeout)
    return res


def losses(out) -> dict[int, float]:
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if r["split"] == "train"}


def weights(out) -> dict[str, torch.Tensor]:
    w = load_file(str(out / "final" / "model.safetensors"))
    w.update({"head." + k: v for k, v in load_file(str(out / "final" / "head.safetensors")).items()})
    return w


def max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    single(data, root / "single")
    # DDP through the user-facing launcher (`basereward train --nproc 2` starts torchrun)
    cmd = [sys.executable, "-m", "basereward", "train", "--nproc", "2", *overrides(data, root / "ddp")]
    res = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=240,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 0, res.stderr[-12000:]  # the ranks' own lines come before torchrun's report
    # rank 0's line only
    assert len([x for x in res.stdout.splitlines() if x.startswith("{")]) == 1, res.stdout
    # FSDP also evaluates mid-run (inference forwards through the sharded model, then training again) and encodes
    # in a DataLoader worker
    res = launch(data, root / "fsdp", **{"distributed.strategy": "fsdp", "eval_every": 2, "num_workers": 1})
    assert res.returncode == 0, res.stderr[-12000:]
    return root


def test_the_data_really_mixes_modalities_across_ranks(data):
    from basereward.data.store import open_pairs
    from basereward.model.processor import load_processor
    from basereward.template import Encoder

    pairs = open_pairs(data / "train.jsonl", lazy=True)
    enc = Encoder(load_processor(data / "tiny", "qwen2_5_vl"), "qwen2_5_vl")
    has_images = {}
    for rank in (0, 1):
        sb = StepBatches(pairs, enc, BATCH, MICRO, 0, None, STEPS, rank=rank, world_size=2)
        for step in (0, 1):
            has_images[rank, step] = [s[0].pixel_values is not None for s in sb[step][0]]
    assert has_images == {
        (0, 0): [False, False],
        (1, 0): [True, True],
        (0, 1): [True, True],
        (1, 1): [False, False],
    }


def test_ddp_equals_one_process(runs):
    a, b = losses(runs / "single"), losses(runs / "ddp")
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
    assert max(abs(a[s] - b[s]) for s in a) < 1e-5
    assert max_diff(weights(runs / "single"), weights(runs / "ddp")) < 1e-5


def test_fsdp_equals_one_process(runs):
    """FSDP2 shards every decoder layer, vision block, the head and the root; same tolerance as DDP (measured
    3.8e-6 max weight difference after 4 steps)."""
    a, b = losses(runs / "single"), losses(runs / "fsdp")
    assert max(abs(a[s] - b[s]) for s in a) < 1e-5
    evals = [
        json.loads(x) for x in (runs / "fsdp" / "metrics.jsonl").read_text().splitlines() if '"eval"' in x
    ]
    assert [e["step"] for e in evals] == [2, 4] and all(e["n"] == 12 for e in evals)
    assert max_diff(weights(runs / "single"), weights(runs / "fsdp")) < 1e-5
    state = json.loads((runs / "fsdp" / "checkpoints" / "step-000002" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["strategy"] == "fsdp"
    assert len(list((runs / "fsdp" / "checkpoints" / "step-000002" / "dcp").glob("*.distcp"))) == 2  # sharded


def resume_from(src, dst):
    (dst / "checkpoints").mkdir(parents=True)
    shutil.copytree(src / "checkpoints" / "step-000002", dst / "checkpoints" / "step-000002")


@pytest.mark.parametrize(
    "source,nproc,strategy",
    [("ddp", 1, "ddp"), ("single", 2, "ddp"), ("fsdp", 2, "fsdp"), ("fsdp", 1, "fsdp")],
)
def test_resume_on_the_same_or_another_world_size(runs, data, tmp_path, source, nproc, strategy):
    """Steps 3-4 after resuming a step-2 checkpoint equal the uninterrupted run's."""
    out = tmp_path / "resumed"
    resume_from(runs / source, out)
    if nproc == 1:
        single(data, out, resume="auto")
    else:
        res = launch(data, out, nproc=nproc, resume="auto", **{"distributed.strategy": strategy})
        assert res.returncode == 0, res.stderr[-12000:]
    got, ref = losses(out), losses(runs / "single")
    assert sorted(got) == [3, 4]  # it started at step 3
    assert max(abs(got[s] - ref[s]) for s in got) < 1e-5
    assert max_diff(weights(out), weights(runs / "single")) < 1e-5


def test_a_killed_rank_ends_the_job(data, tmp_path):
    t0 = time.time()
    res = launch(data, tmp_path / "killed", env={"BASEREWARD_FAULT": "kill@1:2"}, timeout=120)
    assert res.returncode != 0
    assert time.time() - t0 < 90
    assert "exitcode  : -9" in res.stderr or "SIGKILL" in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "killed" / "final").exists()


def test_a_hung_rank_times_out(data, tmp_path):
    """Rank 1 stops answering: rank 0's next collective times out after distributed.timeout_s and the job ends."""
    t0 = time.time()
    res = launch(
        data,
        tmp_path / "hung",
        env={"BASEREWARD_FAULT": "hang@1:2"},
        timeout=150,
        **{"distributed.timeout_s": 10},
    )
    assert res.returncode != 0
    assert time.time() - t0 < 120
    assert "timed out" in res.stderr.lower() or "timeout" in res.stderr.lower(), res.stderr[-2000:]


def test_global_batch_must_divide_by_micro_batch_times_world_size():
    cfg = TrainConfig(batch_size=8, micro_batch_size=2)
    assert cfg.grad_accum(1) == 4 and cfg.grad_accum(2) == 2 and cfg.grad_accum(4) == 1
    with pytest.raises(ValueError, match=r"micro_batch_size x world size \(2 x 3 = 6\)"):
        cfg.grad_accum(3)


def test_a_step_with_dropped_pairs_equals_a_step_on_the_kept_pairs(data, tmp_path):
    """The loss is the mean over the pairs used: with 2 of 8 pairs dropped for length, step 1's gradient (its norm,
    before clipping) equals that of a step on the 6 kept pairs alone. Dividing by the nominal batch size would make
    it 6/8 as large."""
    from basereward.data.store import open_pairs
    from basereward.model.processor import load_processor
    from basereward.template import Encoder

    recs = [json.loads(x) for x in (data / "train.jsonl").read_text().splitlines()][:8]
    for r in recs[:2]:
        r["rejected"] = r["rejected"] + " and so on" * 40  # over max_length
    (tmp_path / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    enc = Encoder(load_processor(data / "tiny", "qwen2_5_vl"), "qwen2_5_vl")
    sb = StepBatches(open_pairs(tmp_path / "mixed.jsonl", lazy=True), enc, 8, 2, 0, 120, 1)
    slots, dropped = sb[0]
    assert dropped["too_long"] == 2 and sum(len(s[1]) for s in slots if s is not None) == 6
    (tmp_path / "kept.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs[2:]))
    kw = {
        "max_steps": 1,
        "save_every": 0,
        "optim.grad_clip": 0,
        "data.validation": "null",
        "data.max_length": 120,
    }
    single(data, tmp_path / "dropped", **{**kw, "data.train": tmp_path / "mixed.jsonl", "batch_size": 8})
    single(data, tmp_path / "kept", **{**kw, "data.train": tmp_path / "kept.jsonl", "batch_size": 6})

    def first(out, key):
        return next(json.loads(x)[key] for x in (out / "metrics.jsonl").read_text().splitlines())

    g_dropped, g_kept = first(tmp_path / "dropped", "grad_norm"), first(tmp_path / "kept", "grad_norm")
    assert first(tmp_path / "dropped", "skipped_too_long") == 2
    assert abs(g_dropped - g_kept) <= 1e-5 * g_kept, (g_dropped, g_kept)
    assert abs(first(tmp_path / "dropped", "loss") - first(tmp_path / "kept", "loss")) < 1e-6


def test_fsdp_bf16_with_activation_checkpointing_and_frozen_tower(runs, data, tmp_path):
    """bf16 compute with fp32 master weights and fp32 gradient reduction, per-layer recompute inside the sharded
    units, a frozen vision tower: it trains (losses within bf16 rounding of the fp32 run), keeps fp32 weights, and
    leaves the frozen tower bit-identical."""
    out = tmp_path / "bf16"
    res = launch(
        data,
        out,
        **{
            "distributed.strategy": "fsdp",
            "precision": "bf16",
            "gradient_checkpointing": "true",
            "freeze_vision": "true",
            "save_every": 0,
        },
    )
    assert res.returncode == 0, res.stderr[-12000:]
    got, ref = losses(out), losses(runs / "single")
    assert max(abs(got[s] - ref[s]) for s in ref) < 5e-3
    w = weights(out)
    assert all(v.dtype == torch.float32 for v in w.values())
    init = load_file(str(data / "tiny" / "model.safetensors"))
    tower = [k for k in init if k.startswith("visual.") and not k.startswith("visual.merger.")]
    assert tower and all(torch.equal(init[k], w[k]) for k in tower)
    assert not torch.equal(init["visual.merger.mlp.0.weight"], w["visual.merger.mlp.0.weight"])


def test_export_reads_a_step_checkpoint_written_by_any_number_of_ranks(runs, tmp_path):
    """A step checkpoint holds only DCP shards; `basereward export` rebuilds the run's model and reads them in, so
    intermediate checkpoints are scored like the final one. The 2-rank FSDP and 1-process step-2 checkpoints give
    the same model."""
    from basereward.cli import main as cli

    for name in ("single", "fsdp"):
        assert (
            cli(
                [
                    "export",
                    "--model",
                    str(runs / name / "checkpoints" / "step-000002"),
                    "--out",
                    str(tmp_path / name),
                ]
            )
            == 0
        )

    def exported(d):
        w = load_file(str(d / "model.safetensors"))
        w.update({"head." + k: v for k, v in load_file(str(d / "head.safetensors")).items()})
        return w

    a, b = exported(tmp_path / "single"), exported(tmp_path / "fsdp")
    assert set(a) == set(weights(runs / "single"))  # the same tensors a final checkpoint has
    assert max_diff(a, b) < 1e-5
    assert max_diff(a, weights(runs / "single")) > 1e-4  # step 2, not the final step 4
    # a step checkpoint moved away from its run (no config.json two levels up) is one clear error
    lone = tmp_path / "lone" / "x" / "step-000002"
    shutil.copytree(runs / "single" / "checkpoints" / "step-000002", lone)
    assert cli(["export", "--model", str(lone), "--out", str(tmp_path / "lone-out")]) == 1


def test_bad_input_is_one_error_line_on_every_rank(data, tmp_path, capsys):
    """Rank 0 indexes the training file and tells the others when it cannot: each rank prints one error line, no
    traceback, and the job exits non-zero. A global batch that does not divide is refused before torchrun starts."""
    from basereward.cli import main as cli

    res = launch(data, tmp_path / "bad", **{"data.train": tmp_path / "missing.jsonl"})
    assert res.returncode != 0
    errors = res.stderr.split("basereward train: error:")[1:]
    assert len(errors) == 2 and all("missing.jsonl" in e.split("\n")[0] for e in errors), res.stderr[-2000:]
    # no rank printed one (torchrun's own report of the failure follows)
    assert "]: Traceback" not in res.stderr
    assert cli(["train", "--nproc", "3", *overrides(data, tmp_path / "odd")]) == 1
    assert "micro_batch_size x world size (2 x 3 = 6)" in capsys.readouterr().err


def test_a_shard_folder_trains_like_the_jsonl(runs, data, tmp_path):
    """The same pairs as an Arrow shard folder (memory-mapped; rank 0 shares the row index, each rank reads only
    its rows): 2 ranks give the one-process JSONL run's losses."""
    from basereward.data.io import read_pairs
    from basereward.data.shards import ShardWriter

    with ShardWriter(tmp_path / "shards", fmt="arrow", shard_rows=6) as w:
        for pair in read_pairs(data / "train.jsonl"):
            w.write(pair)
        w.close()  # a writer left without close() is discarded (partial output)
    res = launch(data, tmp_path / "run", **{"data.train": tmp_path / "shards", "save_every": 0})
    assert res.returncode == 0, res.stderr[-12000:]
    got, ref = losses(tmp_path / "run"), losses(runs / "single")
    assert max(abs(got[s] - ref[s]) for s in ref) < 1e-5
