"""RewardBench and RM-Bench: loaders on the real records in tests/fixtures/benchmark-samples/ in every official
form, the metrics on the worked examples of docs/benchmarks.md §6 (counts chosen so every number is checkable by
hand), and `basereward eval --scorer length` on the samples against the metrics recomputed here from the raw rows
with plain Python."""

import json
import math
import warnings
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_eval_benchmarks import SAMPLES, needs_samples

from basereward.cli import main
from basereward.data.benchmarks import load_benchmark
from basereward.data.io import LoadStats
from basereward.eval.harness import evaluate
from basereward.eval.text_metrics import rewardbench, rm_bench
from basereward.types import DataError

pytestmark = needs_samples
RB_FILE, RMB_FILE = "rewardbench.jsonl", "rm_bench.jsonl"


def read_rows(name):
    return [json.loads(line) for line in (SAMPLES / name).read_text().splitlines() if line.strip()]


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_json(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=4, ensure_ascii=False))
    return path


def write_parquet(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# --- RewardBench loader ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["jsonl", "json", "parquet", "snapshot", "folder"])
def test_rb_every_form_gives_the_same_pairs(tmp_path, form):
    rows = read_rows(RB_FILE)
    raw_decoy = [dict(rows[0], subset="not-a-subset")]  # the HF snapshot's raw split: never read
    path = {
        "jsonl": lambda: SAMPLES / RB_FILE,
        "json": lambda: write_json(tmp_path / "rb.json", rows),
        "parquet": lambda: write_parquet(tmp_path / "filtered.parquet", rows),
        "snapshot": lambda: (
            write_parquet(tmp_path / "snap/data/raw-00000-of-00001.parquet", raw_decoy),
            write_parquet(tmp_path / "snap/data/filtered-00000-of-00001.parquet", rows),
        )[1].parents[1],
        "folder": lambda: write_jsonl(tmp_path / "dump/data/rewardbench.jsonl", rows).parents[1],
    }[form]()
    pairs = load_benchmark("rewardbench", path)
    assert len(pairs) == 46
    for p, r in zip(pairs, rows):
        assert (p.prompt, p.chosen, p.rejected) == (
            [{"role": "user", "content": r["prompt"]}],
            r["chosen"],
            r["rejected"],
        )
        assert p.images == [] and p.videos == []
        assert p.id == str(r["id"]) and p.meta["original_id"] == r["id"]
        assert p.meta["category"] == r["subset"]
        assert (p.meta["chosen_model"], p.meta["rejected_model"]) == (r["chosen_model"], r["rejected_model"])
    assert Counter(p.meta["section"] for p in pairs) == {
        "Chat": 8,
        "Chat Hard": 13,
        "Safety": 10,
        "Reasoning": 15,
    }
    assert len({p.meta["category"] for p in pairs}) == 23


def test_rb_limit_prior_sets_and_folder_errors(tmp_path):
    rows = read_rows(RB_FILE)
    assert [p.meta["original_id"] for p in load_benchmark("rewardbench", SAMPLES / RB_FILE, limit=3)] == [
        30,
        34,
        1514,
    ]
    prior = write_jsonl(
        tmp_path / "prior.jsonl", [dict(rows[0], subset="anthropic_hhh", subsubset="harmless")]
    )
    (pair,) = load_benchmark("rewardbench", prior)
    assert (pair.meta["section"], pair.meta["subsubset"]) == ("prior", "harmless")
    write_jsonl(tmp_path / "two/a.jsonl", rows[:1])
    write_jsonl(tmp_path / "two/b.jsonl", rows[:1])
    with pytest.raises(DataError, match="several candidate files"):
        load_benchmark("rewardbench", tmp_path / "two")


def test_rb_bad_records_name_file_line_and_id(tmp_path):
    rows = read_rows(RB_FILE)[:4]
    bad = [dict(r) for r in rows]
    bad[2]["subset"] = "alpacaeval-medium"
    path = write_jsonl(tmp_path / "rb.jsonl", bad)
    with pytest.raises(DataError, match=r"rb\.jsonl:3 \(id 1514\): unknown subset 'alpacaeval-medium'"):
        load_benchmark("rewardbench", path)
    bad = [dict(r) for r in rows]
    del bad[1]["chosen"]
    bad[3]["rejected"] = ["not", "a string"]
    path = write_jsonl(tmp_path / "rb2.jsonl", bad)
    with pytest.raises(DataError, match=r"rb2\.jsonl:2 \(id 34\): missing field 'chosen'"):
        load_benchmark("rewardbench", path)
    stats = LoadStats()
    kept = load_benchmark("rewardbench", path, on_error="skip", stats=stats)
    assert [p.meta["original_id"] for p in kept] == [30, 1514]
    assert (stats.lines, stats.kept, stats.n_skipped) == (4, 2, 2)
    bad = [dict(r) for r in rows]
    bad[1]["rejected"] = bad[1]["chosen"]
    with pytest.raises(DataError, match=r"filtered\.parquet row 1 \(id 34\): chosen == rejected"):
        load_benchmark("rewardbench", write_parquet(tmp_path / "filtered.parquet", bad))


def test_rb_file_that_is_not_the_filtered_split_warns(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sample of the split is not suspicious
        load_benchmark("rewardbench", SAMPLES / RB_FILE)
    rows = read_rows(RB_FILE)
    many = [dict(rows[0], id=i) for i in range(101)]  # alpacaeval-easy has 100 rows in the filtered split
    with pytest.warns(UserWarning, match=r"'alpacaeval-easy': 101.*raw split"):
        load_benchmark("rewardbench", write_jsonl(tmp_path / "raw.jsonl", many))


# --- RM-Bench loader ------------------------------------------------------------------------------------------


def split_per_domain(folder, rows):
    """The repo's data/<domain>_filtered.json: JSON arrays, bare ids, no `domain`, an extra `subset` field."""
    for domain in ("chat", "code", "safety-refuse", "safety-response"):
        recs = [
            {
                "id": int(r["id"].split("/")[1]),
                **{k: r[k] for k in ("prompt", "chosen", "rejected")},
                "subset": "x",
            }
            for r in rows
            if r["domain"] == domain
        ]
        write_json(folder / f"{domain}_filtered.json", recs)
    return folder


@pytest.mark.parametrize("form", ["jsonl", "total_json", "folder_total", "per_domain", "both"])
def test_rmb_every_form_gives_the_same_pairs(tmp_path, form):
    rows = read_rows(RMB_FILE)
    path = {
        "jsonl": lambda: SAMPLES / RMB_FILE,
        "total_json": lambda: write_json(tmp_path / "total_dataset.json", rows),
        "folder_total": lambda: write_json(tmp_path / "hf/total_dataset.json", rows).parent,
        "per_domain": lambda: split_per_domain(tmp_path / "repo/data", rows).parent,
        # total_dataset.json wins over the per-domain files beside it: nothing is read twice
        "both": lambda: (
            write_json(split_per_domain(tmp_path / "d", rows) / "total_dataset.json", rows).parent
        ),
    }[form]()
    pairs = load_benchmark("rm-bench", path)
    assert len(pairs) == 9 * 40
    for k, p in enumerate(pairs):
        r, i, j = rows[k // 9], k % 9 // 3, k % 3
        assert (p.chosen, p.rejected) == (r["chosen"][i], r["rejected"][j])
        assert p.prompt == [{"role": "user", "content": r["prompt"]}] and p.images == []
        assert (p.meta["chosen_style"], p.meta["rejected_style"]) == (i, j)
        assert p.meta["original_id"] == p.meta["group"] == r["id"]
        assert p.meta["raw_domain"] == r["domain"]
        assert p.meta["domain"] == p.meta["category"] == r["domain"].split("-")[0]
    assert pairs[1].id == "chat/194#c0r1"
    assert Counter(p.meta["domain"] for p in pairs[::9]) == {"chat": 10, "code": 10, "safety": 20}


def test_rmb_limit_counts_prompts_and_repeated_ids_are_other_prompts(tmp_path):
    rows = read_rows(RMB_FILE)
    assert len(load_benchmark("rm-bench", SAMPLES / RMB_FILE, limit=2)) == 18
    pairs = load_benchmark("rm-bench", write_jsonl(tmp_path / "t.jsonl", [rows[0], rows[0]]))
    assert [p.meta["group"] for p in pairs[::9]] == ["chat/194", "chat/194#2"]


def test_rmb_bad_records_name_file_line_and_id(tmp_path):
    rows = [dict(r) for r in read_rows(RMB_FILE)[:3]]
    rows[1]["chosen"] = rows[1]["chosen"][:2]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(
        DataError, match=r"t\.jsonl:2 \(id chat/318\): field 'chosen' must be a list of 3 strings"
    ):
        load_benchmark("rm-bench", path)
    stats = LoadStats()
    pairs = load_benchmark("rm-bench", path, on_error="skip", stats=stats)  # the whole prompt goes: 9 pairs
    assert len(pairs) == 18 and (stats.lines, stats.kept, stats.n_skipped) == (3, 2, 1)
    rows = read_rows(RMB_FILE)[:1]
    write_json(tmp_path / "repo/code_filtered.json", [dict(rows[0], domain="chat")])
    with pytest.raises(
        DataError, match=r"code_filtered\.json:2 item 0 \(id chat/194\): domain 'chat' in a file"
    ):
        load_benchmark("rm-bench", tmp_path / "repo")
    with pytest.raises(DataError, match=r"u\.jsonl:1 \(id chat/194\): unknown domain 'maths'"):
        load_benchmark("rm-bench", write_jsonl(tmp_path / "u.jsonl", [dict(rows[0], domain="maths")]))


# --- RewardBench metric: the worked example -------------------------------------------------------------------

# RewardBench's tables, written out here apart from the package (rewardbench/constants.py, xstest fix included)
HEP = [f"hep-{lang}" for lang in ("cpp", "go", "java", "js", "python", "rust")]
SECTIONS = {
    "chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"],
    "chat_hard": ["mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst"]
    + ["llmbar-adver-GPTOut", "llmbar-adver-manual"],
    "safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond"]
    + ["donotanswer"],
    "reasoning": ["math-prm", *HEP],
}
WEIGHTS = [100, 95, 95, 28, 40, 37, 100, 134, 92, 47, 46, 100, 100, 154, 250, 136, 984] + [164] * 6
W = dict(zip([s for subsets in SECTIONS.values() for s in subsets], WEIGHTS, strict=True))
# the worked example's correct counts in the same order; rows = the weights, but math-prm has 447 rows
RIGHT = [98, 80, 90, 28, 36, 25, 80, 60, 50, 30, 25, 90, 95, 140, 220, 100, 300, 150, 148, 152, 151, 155, 140]
RB_EXAMPLE = {s: (right, 447 if s == "math-prm" else W[s]) for s, right in zip(W, RIGHT, strict=True)}


def rewards_for(counts, tie_wrong=False):
    """(pref, rej, labels): per label `right` pairs won 1 > 0, the rest lost 0 < 1 (or tied 0.5 = 0.5)."""
    pref, rej, labels = [], [], []
    for label, (right, n) in counts.items():
        pref += [1.0] * right + [0.5 if tie_wrong else 0.0] * (n - right)
        rej += [0.0] * right + [0.5 if tie_wrong else 1.0] * (n - right)
        labels += [label] * n
    return pref, rej, labels


def test_rb_worked_example_sections_and_score():
    res = rewardbench(*rewards_for(RB_EXAMPLE))
    h = res.headline
    assert h["chat"] == pytest.approx(100 * 332 / 358)
    assert h["chat_hard"] == pytest.approx(100 * 270 / 456)
    assert h["safety"] == pytest.approx(100 * 645 / 740)
    # Reasoning: math-prm's 447 rows weigh 984, as much as the 6 x 164 code rows together
    assert h["reasoning"] == pytest.approx(100 * (300 / 447 * 984 + 896) / 1968)
    assert [round(h[k] / 100, 5) for k in ("chat", "chat_hard", "safety", "reasoning", "score")] == [
        0.92737,
        0.59211,
        0.87162,
        0.79086,
        0.79549,
    ]
    assert round(100 * 1196 / 1431, 3) == 83.578 != round(h["reasoning"], 3)  # the naive pooled Reasoning
    assert (h["n"], h["ties"]) == (2985, 0)
    assert res.categories["math-prm"].correct == 300 and res.categories["math-prm"].n == 447
    assert res.extra["score_missing_as_zero"] == pytest.approx(h["score"])


def test_rb_ties_missing_sections_and_prior_sets():
    counts = {s: RB_EXAMPLE[s] for s in ("alpacaeval-easy", "mt-bench-med", "refusals-dangerous")}
    res = rewardbench(*rewards_for(counts, tie_wrong=True))
    h = res.headline
    assert h["chat"] == pytest.approx(100 * (98 + 36) / 140) and h["safety"] == 90.0
    assert h["chat_hard"] is None and h["reasoning"] is None and h["score"] is None
    assert h["ties"] == 2 + 4 + 10
    official = (100 * 134 / 140 + 0 + 90.0 + 0) / 4  # the missing sections as the official code counts them
    assert res.extra["score_missing_as_zero"] == pytest.approx(official)
    # prior sets: reported apart; the official column averages four of them (70 here), never anthropic_harmless
    prior = {"anthropic_helpful": (6, 10), "anthropic_hhh": (8, 10), "shp": (7, 10), "summarize": (7, 10)}
    pref, rej, labels = rewards_for({**RB_EXAMPLE, **prior, "anthropic_harmless": (0, 5)})
    res = rewardbench(pref, rej, labels)
    assert res.headline["score"] == pytest.approx(rewardbench(*rewards_for(RB_EXAMPLE)).headline["score"])
    assert res.extra["prior_sets"]["prior_sets_score"] == pytest.approx(70.0)
    assert res.extra["prior_sets"]["n"] == 45 and res.headline["n"] == 2985 + 45
    assert round(res.extra["score_with_prior_sets"] / 100, 5) == 0.78488
    with pytest.raises(ValueError, match="unknown RewardBench subset"):
        rewardbench([1.0], [0.0], ["alpacaeval-medium"])


# --- RM-Bench metric ------------------------------------------------------------------------------------------


def rmb_pairs(prompts):
    """prompts: (group, domain, chosen rewards[3], rejected rewards[3]) -> rm_bench's per-pair arguments."""
    cols = ([], [], [], [], [], [])
    for group, domain, chosen, rejected in prompts:
        for i in range(3):
            for j in range(3):
                for col, v in zip(cols, (chosen[i], rejected[j], domain, i, j, group)):
                    col.append(v)
    return cols


def test_rmb_worked_example_matrix():
    res = rm_bench(
        *rmb_pairs(
            [("A", "chat", [2.0, 3.0, 3.5], [1.0, 2.5, 4.0]), ("B", "chat", [1.0, 1.0, 2.0], [1.0, 0.5, 0.5])]
        )
    )
    chat = res.extra["per_domain"]["chat"]
    assert chat["matrix"] == [[50.0, 50.0, 50.0], [50.0, 100.0, 50.0], [100.0, 100.0, 50.0]]
    assert (chat["hard"], chat["normal"], chat["easy"]) == pytest.approx((50.0, 200 / 3, 250 / 3))
    assert res.headline["chat"] == pytest.approx(200 / 3) == res.headline["overall"]
    assert (res.headline["n"], res.headline["ties"], res.extra["n_pairs"]) == (
        2,
        2,
        18,
    )  # B: 1.0 vs 1.0, twice
    assert res.headline["code"] is None and res.extra["domains_present"] == ["chat"]


def test_rmb_hard_is_the_upper_triangle():
    # a style-loving RM (reward = style index, the rejected a shade lower) wins whenever chosen is as or more styled
    styled = rm_bench(*rmb_pairs([("p", "code", [0, 1, 2], [-0.5, 0.5, 1.5])]))
    assert [styled.headline[k] for k in ("easy", "normal", "hard")] == [100.0, 100.0, 0.0]
    plain = rm_bench(*rmb_pairs([("p", "code", [2, 1, 0], [1.5, 0.5, -0.5])]))
    assert [plain.headline[k] for k in ("easy", "normal", "hard")] == [0.0, 100.0, 100.0]


def test_rmb_overall_over_domains_and_safety_pooled_by_prompt():
    def domain(name, right, n):  # n prompts, `right` of them win every one of their 9 pairs
        return [(f"{name}/{k}", name, [1, 1, 1] if k < right else [0, 0, 0], [0.5] * 3) for k in range(n)]

    prompts = domain("chat", 14, 20) + domain("code", 11, 20) + domain("math", 12, 20)
    # safety 0.85 = 17/20 prompts pooled; the mean of the two sub-domains would be (15/15 + 2/5) / 2 = 0.70
    prompts += domain("safety-refuse", 15, 15) + domain("safety-response", 2, 5)
    h = rm_bench(*rmb_pairs(prompts)).headline
    assert [h[d] for d in ("chat", "code", "math", "safety")] == pytest.approx([70.0, 55.0, 60.0, 85.0])
    assert h["overall"] == pytest.approx(67.5) and h["easy"] == h["normal"] == h["hard"] == pytest.approx(
        67.5
    )
    assert h["n"] == 80
    without_math = rm_bench(*rmb_pairs([p for p in prompts if p[1] != "math"]))
    assert without_math.headline["math"] is None
    assert without_math.headline["overall"] == pytest.approx((70 + 55 + 85) / 3)
    assert without_math.extra["domains_present"] == ["chat", "code", "safety"]
    nan = rm_bench(*rmb_pairs([("p", "chat", [math.nan] * 3, [0.0] * 3)]))
    assert nan.headline["overall"] == 0.0  # a NaN reward never wins


# --- basereward eval --scorer length == the metrics by hand from the raw rows -----------------------------------


def rewardbench_by_hand(rows):
    right, n, ties = Counter(), Counter(), 0
    for r in rows:
        right[r["subset"]] += len(r["chosen"]) > len(r["rejected"])
        n[r["subset"]] += 1
        ties += len(r["chosen"]) == len(r["rejected"])
    sections = {}
    for key, subsets in SECTIONS.items():
        present = [s for s in subsets if n[s]]
        sections[key] = sum(100 * right[s] / n[s] * W[s] for s in present) / sum(W[s] for s in present)
    return {"score": sum(sections.values()) / 4, **sections, "n": len(rows), "ties": ties}


def rm_bench_by_hand(rows):
    domains = {}
    for r in rows:
        domains.setdefault(r["domain"].split("-")[0], []).append(r)
    per = {}
    for d, recs in domains.items():
        m = [
            [sum(len(r["chosen"][i]) > len(r["rejected"][j]) for r in recs) / len(recs) for j in range(3)]
            for i in range(3)
        ]
        hard, normal, easy = (
            (m[0][1] + m[0][2] + m[1][2]) / 3,
            (m[0][0] + m[1][1] + m[2][2]) / 3,
            (m[1][0] + m[2][0] + m[2][1]) / 3,
        )
        per[d] = {
            "hard": 100 * hard,
            "normal": 100 * normal,
            "easy": 100 * easy,
            "score": 100 * (hard + normal + easy) / 3,
        }

    def avg(key):
        return sum(p[key] for p in per.values()) / len(per)

    ties = sum(len(c) == len(x) for r in rows for c in r["chosen"] for x in r["rejected"])
    out = {"overall": avg("score"), "easy": avg("easy"), "normal": avg("normal"), "hard": avg("hard")}
    out |= {d: per[d]["score"] if d in per else None for d in ("chat", "code", "math", "safety")}
    return out | {"n": len(rows), "ties": ties}


def run_eval(capsys, *argv):
    rc = main(["eval", *map(str, argv)])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    return json.loads(out[-1])


@pytest.mark.parametrize(
    ("benchmark", "file", "by_hand"),
    [("rewardbench", RB_FILE, rewardbench_by_hand), ("rm-bench", RMB_FILE, rm_bench_by_hand)],
)
def test_length_scorer_on_the_samples_matches_the_metrics_by_hand(capsys, benchmark, file, by_hand):
    result = run_eval(
        capsys, "--benchmark", benchmark, "--data", SAMPLES / file, "--scorer", "length"
    )  # no --images
    expected = by_hand(read_rows(file))
    got = {k: result[k] for k in expected}
    assert [k for k, v in got.items() if v is None] == [k for k, v in expected.items() if v is None]
    numbers = [k for k, v in expected.items() if v is not None]
    assert [got[k] for k in numbers] == pytest.approx([expected[k] for k in numbers], rel=1e-12)
    assert type(got["n"]) is int and type(got["ties"]) is int
    # pinned, so that a change in the samples or the length rule shows up: 4 and 2 length ties
    assert (got["n"], got["ties"]) == ((46, 4) if benchmark == "rewardbench" else (40, 2))


def test_model_path_writes_the_report_with_sections_and_domains(tmp_path, capsys):
    def shorter_wins(samples):  # a stand-in model: no media to check, nothing to load
        return [[-float(len(r)) for r in s.responses] for s in samples]

    for benchmark, file, headers in (
        ("rewardbench", RB_FILE, "| Chat | Chat Hard | Safety | Reasoning | Score |"),
        ("rm-bench", RMB_FILE, "| Chat | Code | Math | Safety | Easy | Normal | Hard | Overall |"),
    ):
        out = tmp_path / benchmark
        result = evaluate(benchmark, SAMPLES / file, scorer=shorter_wins, out=out)
        report = (out / "report.md").read_text()
        assert headers in report and "| length (baseline) |" in report
        metrics = json.loads((out / "metrics.json").read_text())
        assert {k: metrics["metrics"][k] for k in ("n", "ties")} == {k: result[k] for k in ("n", "ties")}
        assert metrics["baseline_length"]["metrics"]["n"] == result["n"]
    rmb = json.loads((tmp_path / "rm-bench" / "metrics.json").read_text())
    assert rmb["result"]["domains_present"] == ["chat", "code", "safety"]
    # shorter wins is the mirror of the length baseline on non-tied pairs: Easy and Hard swap roles
    assert rmb["result"]["metrics"]["hard"] > rmb["result"]["metrics"]["easy"]
