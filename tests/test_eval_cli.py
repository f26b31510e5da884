"""`basereward eval` end to end: per benchmark, the length-scorer metrics computed by hand here (from the raw
rows, without the package's loaders or metrics) must equal the last stdout JSON line exactly; the report files;
the model path (a stand-in scorer), ties, --limit, and missing media; and the real scorer on a tiny model against
the model run directly on each pair, through the CLI and through the typed `evaluate`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_eval_benchmarks import (
    SAMPLES,
    mmrb_rows,
    mmrlhf_rows,
    needs_samples,
    vlrb_rows,
    write_mmrb,
    write_mmrlhf,
    write_vlrb_github_jsonl,
    write_vlrb_hf_json,
    write_vlrb_parquet,
)

from basereward.cli import main

KEYS = {
    "vl-rewardbench": ["overall", "macro", "general", "hallucination", "reasoning", "n", "ties"],
    "multimodal-rewardbench": [
        "overall",
        "mean7",
        "general_correctness",
        "general_preference",
        "knowledge",
        "reasoning_math",
        "reasoning_coding",
        "safety",
        "vqa",
        "n",
        "ties",
    ],
    "mm-rlhf-rewardbench": [
        "acc",
        "acc_plus",
        "mcq",
        "long",
        "short",
        "safety",
        "video",
        "n_pairs",
        "n_queries",
        "ties",
    ],
    "pairs": ["accuracy", "n", "ties"],
}
COUNTS = {"n", "ties", "n_pairs", "n_queries"}


def run_eval(capsys, *argv) -> tuple[int, dict | None, str]:
    rc = main(["eval", *map(str, argv)])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return rc, (json.loads(lines[-1]) if rc == 0 else None), err


def headline(result: dict, benchmark: str) -> dict:
    missing = set(KEYS[benchmark]) - set(result)
    assert not missing, f"missing keys {missing}"
    for k in COUNTS & set(KEYS[benchmark]):
        assert type(result[k]) is int
    return {k: result[k] for k in KEYS[benchmark]}


def pct(right, n):
    return 100.0 * right / n if n else None


# --- by hand, from raw rows -----------------------------------------------------------------------------------


def vlrb_by_hand(rows, reward=len):
    """The official metrics from raw rows; `reward(response text)` scores a response (default: its length)."""

    def group(rid):
        if rid.startswith(("hallucination_pair", "RLAIF-V", "RLHF-V")):
            return "hallucination"
        return "reasoning" if rid.startswith(("mathverse", "mmmu_pro")) else "general"

    right = {"general": 0, "hallucination": 0, "reasoning": 0}
    n, ties, seen = dict.fromkeys(right, 0), 0, set()
    for r in rows:
        query = r["query"].replace("<image>\n", "").replace("\n<image>", "").replace("<image>", "")
        key = (r["id"], query, *sorted(r["response"]))
        if key in seen:  # cal.py keys pairs on id + query + responses
            continue
        seen.add(key)
        ranking = [int(x) for x in r["human_ranking"]]
        good, bad = reward(r["response"][ranking.index(0)]), reward(r["response"][ranking.index(1)])
        n[group(r["id"])] += 1
        right[group(r["id"])] += good > bad
        ties += good == bad
    acc = {g: pct(right[g], n[g]) for g in right}
    macro = (acc["general"] + acc["hallucination"] + acc["reasoning"]) / 3
    return {
        "overall": pct(sum(right.values()), sum(n.values())),
        "macro": macro,
        **acc,
        "n": sum(n.values()),
        "ties": ties,
    }


def mmrb_by_hand(rows):
    right, n, ties = {}, {}, 0
    for r in rows:
        cat, rid = r["Category"], r["ID"].lower()
        if cat == "safety":
            cat = "safety/bias" if rid.startswith("pairs") else "safety/toxicity"
        if cat == "reasoning":
            cat = "reasoning/math" if rid.startswith("math") else "reasoning/coding"
        good, bad = (r["Output2"], r["Output1"]) if r["Better"] == "Output2" else (r["Output1"], r["Output2"])
        n[cat] = n.get(cat, 0) + 1
        right[cat] = right.get(cat, 0) + (len(good) > len(bad))
        ties += len(good) == len(bad)

    def acc(*cats):
        return pct(sum(right.get(c, 0) for c in cats), sum(n.get(c, 0) for c in cats))

    cols = {
        "general_correctness": acc("open_generation/correctness_task"),
        "general_preference": acc("open_generation/preference_task"),
        "knowledge": acc("knowledge"),
        "reasoning_math": acc("reasoning/math"),
        "reasoning_coding": acc("reasoning/coding"),
        "safety": acc("safety/bias", "safety/toxicity"),
        "vqa": acc("vqa"),
    }
    c = list(cols.values())
    mean7 = None if None in c else (c[0] + c[1] + c[2] + c[3] + c[4] + c[5] + c[6]) / 7
    return {"overall": acc(*n), "mean7": mean7, **cols, "n": sum(n.values()), "ties": ties}


def mmrlhf_by_hand(rows):
    cats = ["mcq", "long", "short", "safety", "video"]
    right, n, ties, ids_ok = dict.fromkeys(cats, 0), dict.fromkeys(cats, 0), 0, {}
    for r in rows:
        ok = len(r["chosen"]) > len(r["rejected"])
        ties += len(r["chosen"]) == len(r["rejected"])
        ids_ok[r["id"]] = ids_ok.get(r["id"], True) and ok
        path = r.get("image") or r.get("video")
        cat = next((c for c in cats if c in path), None)
        if cat:
            n[cat] += 1
            right[cat] += ok
    total_right = sum(len(r["chosen"]) > len(r["rejected"]) for r in rows)
    return {
        "acc": pct(total_right, len(rows)),
        "acc_plus": pct(sum(ids_ok.values()), len(ids_ok)),
        **{c: pct(right[c], n[c]) for c in cats},
        "n_pairs": len(rows),
        "n_queries": len(ids_ok),
        "ties": ties,
    }


def read_rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# --- per benchmark: by hand == basereward eval ----------------------------------------------------------------


@pytest.mark.parametrize("form", ["parquet", "github_jsonl", "hf_json"])
def test_vlrb_length_metrics_by_hand(tmp_path, capsys, form):
    path = {
        "parquet": lambda: write_vlrb_parquet(tmp_path / "vlrb.parquet"),
        "github_jsonl": lambda: write_vlrb_github_jsonl(tmp_path, with_images=False),  # length reads no image
        "hf_json": lambda: write_vlrb_hf_json(tmp_path),
    }[form]()
    rc, result, _ = run_eval(capsys, "--benchmark", "vl-rewardbench", "--data", path, "--scorer", "length")
    assert rc == 0
    expected = vlrb_by_hand(vlrb_rows())
    assert expected["ties"] == 1 and expected["n"] == len(vlrb_rows()) - 1
    assert headline(result, "vl-rewardbench") == expected
    assert result["category_map"] == "official" and result["scorer"] == "length"


def test_mmrb_length_metrics_by_hand(tmp_path, capsys):
    path = write_mmrb(tmp_path, with_images=False)
    rc, result, _ = run_eval(
        capsys, "--benchmark", "multimodal-rewardbench", "--data", path, "--scorer", "length"
    )
    assert rc == 0
    expected = mmrb_by_hand(mmrb_rows())
    assert expected["ties"] == 1 and expected["mean7"] is not None
    assert headline(result, "multimodal-rewardbench") == expected


def test_mmrlhf_length_metrics_by_hand(tmp_path, capsys):
    path = write_mmrlhf(tmp_path, with_media=False)
    rc, result, err = run_eval(
        capsys, "--benchmark", "mm-rlhf-rewardbench", "--data", path, "--scorer", "length"
    )
    assert rc == 0
    assert "no mcq/long/short/safety/video" in err  # the uncategorised row is announced
    expected = mmrlhf_by_hand(mmrlhf_rows())
    assert expected["ties"] == 2
    assert headline(result, "mm-rlhf-rewardbench") == expected


def test_pairs_length_metrics_by_hand(tmp_path, capsys):
    recs = [
        {"id": str(i), "prompt": "q", "chosen": c, "rejected": r}
        for i, (c, r) in enumerate(
            [("long answer", "no"), ("a", "bbb"), ("same", "size"), ("right!", "wrong")]
        )
    ]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    rc, result, _ = run_eval(
        capsys, "--benchmark", "pairs", "--data", tmp_path / "p.jsonl", "--scorer", "length"
    )
    assert rc == 0
    assert headline(result, "pairs") == {"accuracy": 50.0, "n": 4, "ties": 1}


@needs_samples
@pytest.mark.parametrize(
    ("benchmark", "file", "by_hand"),
    [
        ("vl-rewardbench", "vl_rewardbench.jsonl", vlrb_by_hand),
        ("vl-rewardbench", "vl_rewardbench.hf_schema_copy.jsonl", vlrb_by_hand),
        ("mm-rlhf-rewardbench", "mm_rlhf_rewardbench.jsonl", mmrlhf_by_hand),
    ],
)
def test_real_samples_length_metrics_by_hand(capsys, benchmark, file, by_hand):
    rc, result, _ = run_eval(capsys, "--benchmark", benchmark, "--data", SAMPLES / file, "--scorer", "length")
    assert rc == 0
    assert headline(result, benchmark) == by_hand(read_rows(SAMPLES / file))


# --- report, model path, ties, limits, errors -----------------------------------------------------------------


def fake_scoring(monkeypatch, rewards_by_text):
    """Make `basereward.scoring.load_scorer` return a stand-in scorer with hand-set rewards (default: 0)."""
    import basereward.scoring

    calls = []

    def load_scorer(model_dir, progress=True):
        calls.append((model_dir, progress))

        def scorer(samples):
            for s in samples:  # the scoring path reads the media; the stand-in proves they were resolvable
                assert all(Path(img.path).is_file() for img in s.images if img.path)
            return [[rewards_by_text.get(r, 0.0) for r in s.responses] for s in samples]

        return scorer

    monkeypatch.setattr(basereward.scoring, "load_scorer", load_scorer)
    return calls


def test_model_report_with_ties_and_length_baseline(tmp_path, capsys, monkeypatch):
    path = write_vlrb_hf_json(tmp_path / "data")
    rows = vlrb_rows()
    # right on everything except two hand-made ties (RLAIF-V-3 and mathverse_8's first pair)
    rewards = {}
    for r in rows:
        good = r["response"][[int(x) for x in r["human_ranking"]].index(0)]
        bad = r["response"][[int(x) for x in r["human_ranking"]].index(1)]
        rewards[good], rewards[bad] = 2.0, 1.0
    rewards.update({"wrong but much longer": 0.5, "right": 0.5, "30 degrees, because...": 0.25, "45": 0.25})
    calls = fake_scoring(monkeypatch, rewards)
    out = tmp_path / "report"
    rc, result, err = run_eval(
        capsys, "--benchmark", "vl-rewardbench", "--data", path, "--model", tmp_path / "my-rm", "--out", out
    )
    assert rc == 0, err
    assert calls == [(str(tmp_path / "my-rm"), False)]
    assert (result["ties"], result["n"], result["scorer"]) == (2, 10, "model")
    assert result["overall"] == 100.0 * 8 / 10
    # 4 hallucination pairs (one tie), 3 reasoning (the repeated pair key counts once; one tie), 3 general
    assert result["hallucination"] == 75.0 and result["reasoning"] == 200.0 / 3 and result["general"] == 100.0

    doc = json.loads((out / "metrics.json").read_text())
    assert doc["metrics"] == {k: result[k] for k in KEYS["vl-rewardbench"]}
    assert doc["result"]["categories"]["reasoning"] == {
        "accuracy": 200.0 / 3,
        "correct": 2,
        "n": 3,
        "ties": 1,
    }
    assert doc["baseline_length"]["metrics"] == vlrb_by_hand(rows)
    assert doc["data"][0]["sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert doc["category_map"]["name"] == "official"
    assert set(doc["alternative_category_maps"]) == {"povid-in-general", "r1-reward"}
    assert doc["result"]["duplicate_pair_keys"] == 1
    md = (out / "report.md").read_text()
    assert (
        "| my-rm | 100.00 | 75.00 | 66.67 | 80.00 | 80.56 | 10 | 2 |" in md and "| length (baseline) |" in md
    )
    for png in ("category_accuracy.png", "reward_hist.png", "reward_vs_length.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.size[0] > 400


def test_missing_image_names_record_and_path_only_for_a_model(tmp_path, capsys, monkeypatch):
    path = write_mmrlhf(tmp_path, rows=mmrlhf_rows()[:9], with_media=False)
    fake_scoring(monkeypatch, {})
    rc, _, err = run_eval(
        capsys, "--benchmark", "mm-rlhf-rewardbench", "--data", path, "--model", tmp_path / "m"
    )
    assert rc == 1
    assert "mm_reward_bench.jsonl:1 id=q_mcq1: image file not found:" in err and "mcq/q1.png" in err
    assert "(and 8 more)" in err  # 8 images + 1 frames folder missing in all
    rc, result, _ = run_eval(
        capsys, "--benchmark", "mm-rlhf-rewardbench", "--data", path, "--scorer", "length"
    )
    assert rc == 0 and result["n_pairs"] == 9


def test_model_reads_video_rows_from_frame_folders(tmp_path, capsys, monkeypatch):
    path = write_mmrlhf(tmp_path, hf_prefix=True)
    fake_scoring(monkeypatch, {"A man runs across a field.": 1.0, "A dog.": 0.5})
    rc, result, _ = run_eval(
        capsys, "--benchmark", "mm-rlhf-rewardbench", "--data", path, "--model", tmp_path / "m"
    )
    assert rc == 0
    assert result["video"] == 100.0 and result["n_queries"] == 7


def test_limit_and_category_map(tmp_path, capsys):
    path = write_vlrb_parquet(tmp_path / "v.parquet")
    rc, result, _ = run_eval(
        capsys, "--benchmark", "vl-rewardbench", "--data", path, "--scorer", "length", "--limit", 4
    )
    assert rc == 0 and result["n"] == 4 and result["reasoning"] is None and result["macro"] is None
    rc, result, _ = run_eval(
        capsys,
        "--benchmark",
        "vl-rewardbench",
        "--data",
        path,
        "--scorer",
        "length",
        "--category-map",
        "r1-reward",
    )
    assert rc == 0 and result["category_map"] == "r1-reward"
    # under R1-Reward's map RLAIF-V/RLHF-V go to General: Hallucination = the 2 POVID rows, 1 longer-is-right
    assert result["hallucination"] == 100.0 * 1 / 2


def test_console_script_last_line_is_json(tmp_path):
    path = write_mmrb(tmp_path, with_images=False)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "basereward.cli",
            "eval",
            "--benchmark",
            "multimodal-rewardbench",
            "--data",
            str(path),
            "--scorer",
            "length",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert headline(result, "multimodal-rewardbench") == mmrb_by_hand(mmrb_rows())
    assert "prompt/s" in proc.stderr  # the progress bar (pairs are scored merged by prompt)
    assert (tmp_path / "out" / "report.md").is_file()


# --- the real scorer on a tiny model ------------------------------------------------------------------------------

# three real VL-RewardBench rows per category (the shortest ones, to keep the CPU forward small); the first has
# human_ranking [1, 0], so the preferred response is the second
REAL_ROWS = (
    "LRVInstruction-000000007746",
    "wildvision-battle-195",
    "wildvision-battle-124",
    "RLHF-V-31",
    "RLAIF-V-743",
    "RLHF-V-103",
    "mmmu_pro_test_Clinical_Medicine_260",
    "mathverse_3324",
    "mathverse_2679",
)


@pytest.fixture(scope="module")
def tiny_rm(tiny_dirs, tmp_path_factory):
    import torch

    from basereward.model.processor import load_processor
    from basereward.model.reward_model import RewardModel

    out = tmp_path_factory.mktemp("eval_rm") / "rm"
    model = RewardModel.from_backbone(tiny_dirs["qwen2_5_vl"], seed=4)
    with torch.no_grad():  # a head that spreads rewards, so no pair is a near-tie
        for p in model.head.parameters():
            p.normal_(0, 0.5)
    model.save(out, load_processor(tiny_dirs["qwen2_5_vl"], "qwen2_5_vl"))
    return out


def real_vlrb_subset(root: Path) -> tuple[Path, list[dict]]:
    """REAL_ROWS copied byte for byte, with a distinct small picture at each row's image path."""
    from data_fixtures import picture

    lines = [
        line
        for line in (SAMPLES / "vl_rewardbench.jsonl").read_text().splitlines()
        if line.strip() and json.loads(line)["id"] in REAL_ROWS
    ]
    rows = [json.loads(line) for line in lines]
    assert sorted(r["id"] for r in rows) == sorted(REAL_ROWS)
    for i, r in enumerate(rows):
        img = root / r["image_path"]
        img.parent.mkdir(parents=True, exist_ok=True)
        picture(i, size=56).save(img)
    path = root / "vl_rewardbench.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path, rows


def rewards_one_response_per_forward(model_dir: Path, pairs) -> dict[str, float]:
    """Response text -> reward, each response alone in its own padded forward: no chunking, no shared rows."""
    import torch

    from basereward.collate import collate_padded
    from basereward.model.reward_model import load_reward_model
    from basereward.template import Encoder
    from basereward.types import Sample

    model, processor = load_reward_model(model_dir)
    encoder = Encoder(processor, model.model_type, model.pool_token)
    out = {}
    with torch.no_grad():
        for p in pairs:
            for text in (p.chosen, p.rejected):
                batch = collate_padded([encoder.encode(Sample(p.prompt, [text], p.images))], encoder.pad_id)
                out[text] = float(model(batch)[0])
    return out


def pearson(xs, ys) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    return cov / (sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys)) ** 0.5


@needs_samples
def test_real_scorer_on_real_records_matches_the_model_run_directly(tmp_path, capsys, tiny_rm):
    from basereward.data.benchmarks import load_benchmark

    path, rows = real_vlrb_subset(tmp_path / "vlrb")
    pairs = load_benchmark("vl-rewardbench", path)
    reward = rewards_one_response_per_forward(tiny_rm, pairs)
    assert len(reward) == 2 * len(pairs) == 2 * len(REAL_ROWS)  # every response text distinct
    margins = sorted(abs(reward[p.chosen] - reward[p.rejected]) for p in pairs)
    assert margins[0] > 1e-3  # no near-tie that float rounding between layouts could flip
    expected = vlrb_by_hand(rows, reward=lambda text: reward[text])
    assert 0 < expected["overall"] < 100  # the check can tell right from wrong both ways

    out = tmp_path / "report"
    rc, result, err = run_eval(
        capsys, "--benchmark", "vl-rewardbench", "--data", path, "--model", tiny_rm, "--out", out
    )
    assert rc == 0, err
    assert headline(result, "vl-rewardbench") == expected
    doc = json.loads((out / "metrics.json").read_text())
    lengths = [float(len(t)) for p in pairs for t in (p.chosen, p.rejected)]
    rewards = [reward[t] for p in pairs for t in (p.chosen, p.rejected)]
    assert doc["reward_vs_length"]["pearson"] == pytest.approx(pearson(lengths, rewards), abs=1e-5)
    assert doc["baseline_length"]["metrics"] == vlrb_by_hand(rows)

    # the typed verb, with a ready scorer in the padded layout: the same numbers
    from basereward.eval.harness import evaluate
    from basereward.scoring import load_scorer

    padded = load_scorer(tiny_rm, device="cpu", progress=False, layout="padded", batch_size=3)
    typed = evaluate("vl-rewardbench", path, scorer=padded, batch_size=4)
    assert headline(typed, "vl-rewardbench") == expected
    assert typed["scorer"] == "model" and typed["model"] is None and typed["report"] is None
