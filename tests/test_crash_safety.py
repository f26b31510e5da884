"""Crash safety: a trainer killed with SIGKILL anywhere (mid-forward, right after the optimizer update, with a
checkpoint half-written, right after its rename, with the final model written but not renamed) and resumed with
`resume=auto` until done ends with exactly the weights of an uninterrupted run (fp32, CPU: bit for bit). After
every kill each `step-N/` folder that exists is complete and readable. A disk that fills up mid-checkpoint (or
mid-final-model) leaves the earlier checkpoints (final model) intact; the durability order (fsync of files and
folders, rename, fsync of the parent) is checked; non-finite steps are skipped on every rank or stop the run, and
non-finite weights are never written.

Kill points come from a seeded RNG and are printed (run with -s) and named in every assertion message, so a failure
can be replayed with BASEREWARD_FAULT=kill@RANK:STEP:PHASE (see basereward/faults.py).
"""

import errno
import json
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from dist_utils import torchrun
from safetensors.torch import load_file, save_file

from basereward.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, write_final
from basereward.config import load_config
from basereward.faults import parse
from basereward.train import main as train_main
from basereward.types import DataError

STEPS, SAVE = 12, 2
KILL_PHASES = ("step", "forward", "optim", "ckpt", "rename")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from basereward.data.synthetic import synthesize
    from basereward.tiny import init_tiny

    root = tmp_path_factory.mktemp("crash")
    init_tiny(root / "tiny", size="test", seed=0)
    synthesize(root / "syn", pairs=32, eval_pairs=0, seed=3, text_share=0.5, kinds=("colour",))
    return root


def overrides(data, out, **kw) -> list[str]:
    base = {
        "model.backbone": data / "tiny",
        "data.train": data / "syn" / "train.jsonl",
        "data.validation": "null",
        "batch_size": 4,
        "micro_batch_size": 2,
        "max_steps": STEPS,
        "save_every": SAVE,
        "keep_checkpoints": 2,
        "log_every": 1,
        "progress": "false",
        "tensorboard": "false",
        "optim.lr": 1e-3,
        "optim.warmup_steps": 1,
        "output_dir": out,
    }
    base.update(kw)
    return [f"{k}={v}" for k, v in base.items()]


def train(data, out, fault=None, nproc=1, **kw) -> subprocess.CompletedProcess:
    """`basereward train` in a fresh process (torchrun for nproc > 1), one thread, optionally with a fault."""
    env = {k: v for k, v in os.environ.items() if k != "BASEREWARD_FAULT"}
    env.update({"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    if fault:
        env["BASEREWARD_FAULT"] = fault
    if nproc > 1:
        return torchrun(["train", *overrides(data, out, **kw)], nproc=nproc, env=env, timeout=300)
    cmd = [sys.executable, "-m", "basereward", "train", *overrides(data, out, **kw)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    w = load_file(str(out / "final" / "model.safetensors"))
    w.update({"head." + k: v for k, v in load_file(str(out / "final" / "head.safetensors")).items()})
    return w


def read_dcp(ckpt: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a step checkpoint, read with DCP alone (from its own metadata, not through basereward)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    meta = dcp.FileSystemReader(str(ckpt / "dcp")).read_metadata()
    sd = {
        k: torch.empty(m.size, dtype=m.properties.dtype)
        for k, m in meta.state_dict_metadata.items()
        if isinstance(m, TensorStorageMetadata)
    }
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(sd, checkpoint_id=str(ckpt / "dcp"), no_dist=True)
    return sd


def complete_steps(out: Path, context: str) -> list[int]:
    """The `step-N/` folders (not `.tmp`), after checking that each is whole: its state file names its step and
    every tensor its metadata lists reads back, finite."""
    steps = []
    for d in sorted((out / "checkpoints").glob("step-*")):
        if d.name.endswith(".tmp"):
            continue
        state = json.loads((d / "trainer_state.json").read_text())
        assert state["step"] == int(d.name.split("-")[1]), context
        tensors = read_dcp(d)
        assert tensors and all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()), (
            context
        )
        steps.append(state["step"])
    return steps


def kill_and_resume(
    data, out: Path, seed: int, kills: int, steps: int = STEPS, nproc: int = 1, kill_final: bool = False
) -> list[str]:
    """Kill the run `kills` times at seeded points, resuming with resume=auto after each, then let it finish.
    Every phase is drawn equally often, in a seeded order; each kill lands at most one save interval past the newest
    complete checkpoint, so that it fires and the checkpoint phases stay reachable. `kill_final` adds a kill while
    the final model is written. Returns the faults used."""
    rng = random.Random(seed)
    rounds = -(-kills // len(KILL_PHASES))
    phases = [p for _ in range(rounds) for p in rng.sample(KILL_PHASES, len(KILL_PHASES))][:kills]
    done, faults = 0, []
    for phase in phases:
        window = range(done + 1, min(done + SAVE + 1, steps) + 1)
        saves = [s for s in window if s % SAVE == 0 and s < steps]
        if phase in ("ckpt", "rename") and not saves:  # only near the end of a long chain
            phase = rng.choice(KILL_PHASES[:3])
        step = rng.choice(saves if phase in ("ckpt", "rename") else window)
        rank = 0 if phase == "rename" else rng.randrange(nproc)  # rank 0 alone renames
        faults.append(f"kill@{rank}:{step}:{phase}")
        context = f"seed {seed}, faults so far {faults}"
        print(context, flush=True)
        res = train(data, out, fault=faults[-1], nproc=nproc, resume="auto", max_steps=steps)
        assert res.returncode != 0 and not (out / "final").exists(), (
            f"{context}: not killed\n{res.stderr[-3000:]}"
        )
        if nproc == 1:
            assert res.returncode == -9, f"{context}\n{res.stderr[-3000:]}"
        ckpts = complete_steps(out, context)
        # a kill after the rename keeps that checkpoint (older ones wait for the next save's pruning); one before
        # it keeps the previous
        newest = step if phase == "rename" else (step - 1) // SAVE * SAVE
        done = ckpts[-1] if ckpts else 0
        assert done == newest, f"{context}: checkpoints {ckpts}, expected newest {newest}"
    if kill_final:  # and once more while the final model is written (rank 0 writes it)
        faults.append(f"kill@0:{steps}:final")
        res = train(data, out, fault=faults[-1], nproc=nproc, resume="auto", max_steps=steps)
        assert res.returncode != 0 and not (out / "final").exists(), (
            f"{faults}: not killed\n{res.stderr[-3000:]}"
        )
    res = train(data, out, nproc=nproc, resume="auto", max_steps=steps)
    assert res.returncode == 0, f"seed {seed}, faults {faults}\n{res.stderr[-3000:]}"
    assert not list((out / "checkpoints").glob("*.tmp")), faults  # leftovers were cleaned
    assert json.loads(res.stdout.splitlines()[-1])["steps"] == steps
    return faults


def assert_same_weights(a: dict, b: dict, faults: list[str]) -> None:
    assert set(a) == set(b)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, (
        f"faults {faults}: {len(differ)} tensors differ from the uninterrupted run, e.g. {differ[:3]}"
    )


def uninterrupted(data, out: Path, steps: int = STEPS, nproc: int = 1) -> dict[str, torch.Tensor]:
    res = train(data, out, nproc=nproc, max_steps=steps)
    assert res.returncode == 0, res.stderr[-3000:]
    return final_weights(out)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The final weights of one uninterrupted single-process run of STEPS steps."""
    return uninterrupted(data, tmp_path_factory.mktemp("ref") / "run")


def test_five_seeded_kills_then_resume_equal_the_uninterrupted_run(data, tmp_path, reference):
    faults = kill_and_resume(data, tmp_path / "run", seed=0, kills=5)
    assert sorted(parse(f)[0][3] for f in faults) == sorted(KILL_PHASES), faults  # each phase once
    assert_same_weights(final_weights(tmp_path / "run"), reference, faults)


def test_a_kill_while_the_final_model_is_written_leaves_no_final_and_the_resume_writes_it(
    data, tmp_path, reference
):
    """Killed with the final model's files written and fsynced but not yet renamed: no `final/` (so nothing
    half-written is ever loaded as the trained model), and `resume=auto` cleans `final.tmp/`, resumes from the
    newest checkpoint and writes the same final model as the uninterrupted run."""
    out, fault = tmp_path / "run", f"kill@0:{STEPS}:final"
    res = train(data, out, fault=fault, resume="auto")
    assert res.returncode == -9, res.stderr[-3000:]
    assert not (out / "final").exists() and (out / "final.tmp" / "head.safetensors").is_file()
    assert complete_steps(out, fault)[-1] == (STEPS - 1) // SAVE * SAVE
    res = train(data, out, resume="auto")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"removed the incomplete {out / 'final.tmp'}" in res.stdout
    assert not (out / "final.tmp").exists()
    assert_same_weights(final_weights(out), reference, [fault])


@pytest.mark.slow
def test_twenty_seeded_kills_then_resume_equal_the_uninterrupted_run(data, tmp_path):
    faults = kill_and_resume(data, tmp_path / "run", seed=1, kills=20, steps=40, kill_final=True)
    assert {parse(f)[0][3] for f in faults} == {*KILL_PHASES, "final"}, faults
    assert_same_weights(final_weights(tmp_path / "run"), uninterrupted(data, tmp_path / "ref", 40), faults)


@pytest.mark.slow
def test_two_processes_killed_and_resumed_equal_their_uninterrupted_run(data, tmp_path):
    """torchrun, 2 ranks (DDP, gloo): a killed rank ends the job; resumed on 2 ranks it ends bit for bit where an
    uninterrupted 2-rank run does."""
    faults = kill_and_resume(data, tmp_path / "run", seed=2, kills=3, nproc=2, kill_final=True)
    ref = uninterrupted(data, tmp_path / "ref", nproc=2)
    assert_same_weights(final_weights(tmp_path / "run"), ref, faults)


def test_fault_specs_parse_old_and_new_forms():
    assert parse("kill@1:2") == [("kill", 1, 2, "step")]
    assert parse("kill@0:4:ckpt, nan@1:3") == [("kill", 0, 4, "ckpt"), ("nan", 1, 3, "step")]
    assert parse(None) == parse("") == []
    for bad in ("kill@0", "boom@0:1", "kill@0:1:later", "kill@a:1"):
        with pytest.raises(ValueError, match="KIND@RANK:STEP"):
            parse(bad)


# --- checkpoint writes: durability order, disk full, non-finite weights ---------------------------------------


def linear_state(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model(torch.ones(2, 4)).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


def save(root: Path, step: int, model, opt, sched) -> Path:
    return save_checkpoint(
        root / "checkpoints" / f"step-{step:06d}",
        model=model,
        optimizer=opt,
        scheduler=sched,
        step=step,
        info={},
    )


def test_files_and_folders_are_fsynced_before_the_rename_and_the_parent_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.realpath(os.readlink(f"/proc/self/fd/{fd}"))))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", os.path.realpath(src), os.path.realpath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    ckpt = save(tmp_path, 1, *linear_state())
    tmp, parent = str(ckpt.with_name(ckpt.name + ".tmp").resolve()), str(ckpt.parent.resolve())
    renames = [i for i, e in enumerate(events) if e == ("rename", tmp, str(ckpt.resolve()))]
    assert len(renames) == 1, events
    before, after = {e[1] for e in events[: renames[0]]}, {e[1] for e in events[renames[0] + 1 :]}
    written = [tmp + "/" + str(p.relative_to(ckpt)) for p in ckpt.rglob("*")]
    assert any(w.endswith(".distcp") for w in written) and any(
        w.endswith("trainer_state.json") for w in written
    )
    missing = [p for p in [*written, tmp, parent] if p not in before]
    assert not missing, f"not fsynced before the rename: {missing}"
    assert parent in after, "the rename itself was not made durable (no fsync of the parent afterwards)"


@pytest.mark.parametrize("where", ["shards", "state"])
def test_a_full_disk_mid_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch, where):
    """ENOSPC while DCP writes the shards, or while rank 0 finishes the folder: a clear error, no step-2 folder,
    no leftovers, and step 1 loads back exactly as saved."""
    import torch.distributed.checkpoint.filesystem as fs

    from basereward import checkpoint

    model, opt, sched = linear_state()
    save(tmp_path, 1, model, opt, sched)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    model(torch.ones(2, 4)).sum().backward()
    opt.step()  # step 2's weights differ from step 1's
    calls = []

    def full(real):
        def fn(*a, **kw):
            calls.append(1)
            if len(calls) == 2:  # after something was written
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "disk")
            return real(*a, **kw)

        return fn

    if where == "shards":
        monkeypatch.setattr(fs, "_write_item", full(fs._write_item))
    else:
        monkeypatch.setattr(checkpoint, "_fsync", full(checkpoint._fsync))
    with pytest.raises(
        CheckpointError, match=r"step-000002 could not be written \(No space left.*step-000001"
    ):
        save(tmp_path, 2, model, opt, sched)
    assert len(calls) == 2
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000001"]
    fresh, fresh_opt, fresh_sched = linear_state(seed=1)
    state = load_checkpoint(
        tmp_path / "checkpoints" / "step-000001", model=fresh, optimizer=fresh_opt, scheduler=fresh_sched
    )
    assert state["step"] == 1
    assert all(torch.equal(saved[k], v) for k, v in fresh.state_dict().items())


def test_a_full_disk_while_the_final_model_is_written_keeps_the_earlier_one(tmp_path, monkeypatch):
    from basereward import checkpoint

    def write(value: float, fail: bool = False):
        def fn(d: Path) -> None:
            d.mkdir()
            save_file({"w": torch.full((2,), value)}, str(d / "w.safetensors"))
            if fail:  # the first file went out, the second finds the disk full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(d / "head.safetensors"))

        return fn

    final = write_final(tmp_path / "final", write(1.0), step=3)

    with pytest.raises(
        CheckpointError, match=r"final could not be written \(No space left.*earlier .* intact"
    ):
        write_final(final, write(2.0, fail=True), step=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    assert torch.equal(load_file(str(final / "w.safetensors"))["w"], torch.ones(2))
    assert checkpoint.clean_partial(tmp_path) == []


def test_non_finite_weights_are_never_written(tmp_path):
    model, opt, sched = linear_state()
    with torch.no_grad():
        model.bias[1] = float("inf")
    with pytest.raises(CheckpointError, match="non-finite weights.*bias"):
        save(tmp_path, 1, model, opt, sched)
    assert not list((tmp_path / "checkpoints").glob("*"))


# --- non-finite loss: skip (the default) or stop -----------------------------------------------------------------


def in_process(data, out, monkeypatch, fault, **kw):
    monkeypatch.setenv("BASEREWARD_FAULT", fault)
    return train_main(load_config(None, overrides(data, out, **kw)))


NAN_RUN = {"max_steps": 4, "save_every": 1, "keep_checkpoints": 5}


def test_a_nan_loss_skips_the_step_leaving_weights_and_optimizer_unchanged(data, tmp_path, monkeypatch):
    res = in_process(data, tmp_path / "nan", monkeypatch, "nan@0:2", **NAN_RUN)
    assert res["nonfinite_steps_skipped"] == 1 and res["steps"] == 4
    ck = tmp_path / "nan" / "checkpoints"
    one, two, three = (read_dcp(ck / f"step-00000{s}") for s in (1, 2, 3))
    assert set(one) == set(two) and any(k.startswith("optim.") for k in one)
    assert [
        k for k in one if not torch.equal(one[k], two[k])
    ] == []  # weights and AdamW state: step 2 skipped
    assert [
        k for k in one if k.startswith("model.") and torch.equal(two[k], three[k])
    ] == []  # step 3 trained
    recs = [json.loads(x) for x in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if r["split"] == "nonfinite"] == [2]
    train = {r["step"]: r for r in recs if r["split"] == "train"}
    assert [train[s]["nonfinite_steps_skipped"] for s in (1, 2, 3, 4)] == [0, 1, 1, 1]
    assert all(r["loss"] == r["loss"] for r in train.values())  # no NaN in the logged losses
    state = json.loads((ck / "step-000003" / "trainer_state.json").read_text())
    assert state["nonfinite_steps_skipped"] == 1  # carried over by a resume


def test_the_stop_policy_ends_the_run_naming_the_step(data, tmp_path, monkeypatch, capsys):
    from basereward.cli import main as cli

    with pytest.raises(DataError, match=r"step 3: non-finite loss .*nonfinite=stop"):
        in_process(data, tmp_path / "stop", monkeypatch, "nan@0:3", nonfinite="stop", save_every=0)
    assert not (tmp_path / "stop" / "final").exists()
    assert cli(["train", *overrides(data, tmp_path / "cli", nonfinite="stop", save_every=0)]) == 1
    assert "basereward train: error: step 3: non-finite loss" in capsys.readouterr().err
    with pytest.raises(DataError, match="nonfinite must be one of"):
        load_config(None, overrides(data, tmp_path, nonfinite="maybe"))


def test_a_nan_on_one_rank_makes_every_rank_skip(data, tmp_path):
    """2 ranks (DDP): rank 1's loss is NaN at step 2; both ranks skip it, so step 2's checkpoint equals step 1's,
    the run finishes with finite weights, and the skip is reported once."""
    res = train(data, tmp_path / "ddp", fault="nan@1:2", nproc=2, **NAN_RUN)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.splitlines()[-1])["nonfinite_steps_skipped"] == 1
    ck = tmp_path / "ddp" / "checkpoints"
    one, two, three = (read_dcp(ck / f"step-00000{s}") for s in (1, 2, 3))
    assert [k for k in one if not torch.equal(one[k], two[k])] == []
    assert [k for k in one if k.startswith("model.") and torch.equal(two[k], three[k])] == []
