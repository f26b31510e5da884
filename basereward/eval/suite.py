"""`basereward eval --suite paper`: the paper's whole scoreboard for one or more models, one command.

    basereward eval --suite paper --model runs/a/final --model runs/b/final --data-root benchmarks/ --out reports/

ROOT holds one folder per benchmark, named as `--benchmark` names it (`ROOT/vl-rewardbench/`,
`ROOT/rewardbench/`, ...), each holding what that benchmark's `--data` accepts, with its media inside (the
default image root of every loader is the data file's folder). A missing folder is skipped and named. Each model
is loaded once and scored on every benchmark present by `evaluate` (one report per model and benchmark under
`--out/<name>/<benchmark>/`); then the paper's table: the five headline columns, the two averages, and the
fine-grained columns of its Tables 1 and 5, as Markdown (`paper-table.md`) and JSON (`paper-table.json`), with the
published BaseReward row beside ours. The result line is `{"models": {NAME: row}, "skipped": [...]}`.

Averages run over the benchmarks present and name them (`multimodal_avg_over`, `pure_text_avg_over`): a model
scored on three of the four multimodal benchmarks gets a mean of three, marked as such in the table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from basereward.eval.harness import evaluate
from basereward.eval.report import fmt
from basereward.eval.tally import TIE_RULES

SUITES = ("paper",)
MULTIMODAL = ("vl-rewardbench", "mm-rlhf-rewardbench", "multimodal-rewardbench")
TEXT = ("rewardbench", "rm-bench")
PAPER_BENCHMARKS = MULTIMODAL + TEXT

# row column -> (benchmark, key of `basereward eval`'s result line). Multimodal RewardBench's column is the micro
# overall: the paper's BaseReward rows do not match the 7-column mean (docs/recipe.md §11), and micro is what the
# benchmark's README defines.
HEADLINE = {
    "vl_rewardbench_overall": ("vl-rewardbench", "overall"),
    "mm_rlhf_acc": ("mm-rlhf-rewardbench", "acc"),
    "mm_rlhf_acc_plus": ("mm-rlhf-rewardbench", "acc_plus"),
    "multimodal_rewardbench_overall": ("multimodal-rewardbench", "overall"),
    "rewardbench": ("rewardbench", "score"),
    "rm_bench": ("rm-bench", "overall"),
}
MULTIMODAL_AVG = (
    "vl_rewardbench_overall",
    "mm_rlhf_acc",
    "mm_rlhf_acc_plus",
    "multimodal_rewardbench_overall",
)
TEXT_AVG = ("rewardbench", "rm_bench")
# the fine-grained columns of the paper's Tables 1 and 5 (Multimodal RewardBench's 7 areas, VL-RewardBench's
# groups), and the text benchmarks' sections
FINE = {
    "vl_rewardbench_macro": ("vl-rewardbench", "macro"),
    "vl_general": ("vl-rewardbench", "general"),
    "vl_hallucination": ("vl-rewardbench", "hallucination"),
    "vl_reasoning": ("vl-rewardbench", "reasoning"),
    "mmrb_mean7": ("multimodal-rewardbench", "mean7"),
    "mmrb_correctness": ("multimodal-rewardbench", "general_correctness"),
    "mmrb_preference": ("multimodal-rewardbench", "general_preference"),
    "mmrb_knowledge": ("multimodal-rewardbench", "knowledge"),
    "mmrb_math": ("multimodal-rewardbench", "reasoning_math"),
    "mmrb_coding": ("multimodal-rewardbench", "reasoning_coding"),
    "mmrb_safety": ("multimodal-rewardbench", "safety"),
    "mmrb_vqa": ("multimodal-rewardbench", "vqa"),
    "rewardbench_chat": ("rewardbench", "chat"),
    "rewardbench_chat_hard": ("rewardbench", "chat_hard"),
    "rewardbench_safety": ("rewardbench", "safety"),
    "rewardbench_reasoning": ("rewardbench", "reasoning"),
    "rm_bench_easy": ("rm-bench", "easy"),
    "rm_bench_normal": ("rm-bench", "normal"),
    "rm_bench_hard": ("rm-bench", "hard"),
}

# The published BaseReward (Qwen2.5-VL-7B) final model, arXiv 2509.16127v1: Tables 8 (MM-RLHF), 9 (VL-RewardBench)
# and 10 (Multimodal RewardBench); the text columns are Figure 2's "all 7 datasets" bars (read off the figure's
# labels). multimodal_avg and pure_text_avg are our means of those columns: the paper prints no average for its
# final model. See docs/recipe.md §8 and §11.
PAPER_ROW = {
    "vl_rewardbench_overall": 82.16,
    "mm_rlhf_acc": 91.76,
    "mm_rlhf_acc_plus": 80.43,
    "multimodal_rewardbench_overall": 72.8,
    "rewardbench": 80.9,
    "rm_bench": 68.1,
    "vl_rewardbench_macro": 80.85,
    "vl_general": 68.55,
    "vl_hallucination": 92.19,
    "vl_reasoning": 81.82,
    "mmrb_correctness": 65.7,
    "mmrb_preference": 65.0,
    "mmrb_knowledge": 70.6,
    "mmrb_math": 82.7,
    "mmrb_coding": 50.3,
    "mmrb_safety": 81.5,
    "mmrb_vqa": 85.0,
}
PAPER_NAME = "BaseReward (paper, Qwen2.5-VL-7B)"


def _mean_present(row: dict, keys: tuple[str, ...]) -> tuple[float | None, list[str]]:
    present = [k for k in keys if row.get(k) is not None]
    return (sum(row[k] for k in present) / len(present) if present else None), present


def paper_row(results: dict[str, dict]) -> dict:
    """One table row from `evaluate`'s result lines by benchmark name (absent benchmark: null columns)."""
    row: dict = {}
    for col, (bench, key) in {**HEADLINE, **FINE}.items():
        row[col] = results.get(bench, {}).get(key)
    return with_averages(row)


def with_averages(row: dict) -> dict:
    mm, mm_over = _mean_present(row, MULTIMODAL_AVG)
    text, text_over = _mean_present(row, TEXT_AVG)
    return {
        "multimodal_avg": mm,
        "pure_text_avg": text,
        **row,
        "multimodal_avg_over": mm_over,
        "pure_text_avg_over": text_over,
    }


def model_names(models: list[str]) -> dict[str, str]:
    """{path: NAME}: the directory's name, or the shortest tail of its path that tells it apart where names clash
    (runs/a/final and runs/b/final -> a/final and b/final; runs/x/train/final and runs/y/train/final ->
    x/train/final and y/train/final), so no row overwrites another."""
    parts = {m: Path(m).resolve().parts for m in models}
    names = {}
    for m, own in parts.items():
        for k in range(1, len(own) + 1):
            tail = own[-k:]
            if all(other[-k:] != tail for o, other in parts.items() if o != m and other != own):
                break
        names[m] = "/".join(tail)
    return names


def run_suite(
    suite: str,
    data_root: str | Path,
    *,
    models: list[str] | None = None,
    scorer: str | None = None,
    out: str | Path | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    ties: str = "wrong",
    on_error: str = "fail",
    category_map: str = "official",
) -> dict | None:
    """Score every benchmark of `suite` found under `data_root` with each model (or the built-in `scorer`), write
    the table into `out`, and return `{"models": {NAME: row}, "skipped": [...]}` (None on ranks other than 0 under
    torchrun). `ties`, `on_error` and `category_map` go to every `evaluate` call."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    if bool(models) == (scorer is not None):
        raise ValueError("give --model (one or more) or --scorer, not both")
    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"--data-root {root}: not a folder")
    present = [b for b in PAPER_BENCHMARKS if (root / b).exists()]
    skipped = [{"benchmark": b, "reason": f"no {root / b}"} for b in PAPER_BENCHMARKS if b not in present]
    for s in skipped:
        print(f"skipping {s['benchmark']}: {s['reason']}", file=sys.stderr)
    if not present:
        raise FileNotFoundError(f"--data-root {root}: none of {', '.join(PAPER_BENCHMARKS)} is there")

    entries = [(None, "length")] if scorer else list(model_names(list(models)).items())
    rows: dict[str, dict] = {}
    for path, name in entries:
        loaded = None
        if path is not None:
            from basereward.scoring import load_scorer

            loaded = load_scorer(path, progress=False)  # once per model, shared by its five benchmarks
        results = {}
        for bench in present:
            print(f"--- {name}: {bench}", file=sys.stderr, flush=True)
            res = evaluate(
                bench,
                root / bench,
                scorer=loaded if loaded is not None else scorer,
                out=None if out is None else Path(out) / name / bench,
                batch_size=batch_size,
                limit=limit,
                ties=ties,
                on_error=on_error,
                category_map=category_map,
                name=name,
                source=path,
            )
            if res is not None:
                results[bench] = res
        if results:  # rank 0 (the others get None from evaluate)
            rows[name] = paper_row(results)
    if not rows:
        return None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "paper-table.md").write_text(markdown(rows, skipped, ties))
        table = {
            "models": rows,
            "paths": {name: path and str(Path(path).resolve()) for path, name in entries},
            "paper": with_averages(dict(PAPER_ROW)),
            "skipped": skipped,
            "tie_policy": ties,
        }
        (Path(out) / "paper-table.json").write_text(json.dumps(table, indent=2) + "\n")
    print(markdown(rows, skipped, ties))
    return {"models": rows, "skipped": [s["benchmark"] for s in skipped]}


def _cell(row: dict, col: str) -> str:
    value = fmt(row.get(col))
    over = row.get(f"{col}_over")
    full = {"multimodal_avg": MULTIMODAL_AVG, "pure_text_avg": TEXT_AVG}.get(col)
    if full and over is not None and 0 < len(over) < len(full):
        value += f" ({len(over)}/{len(full)})"  # a mean over fewer columns is another number: say so
    return value


def markdown(rows: dict[str, dict], skipped: list[dict], ties: str = "wrong") -> str:
    """The paper's table (its Tables 4/6 layout) and the fine-grained one (Tables 1/5), ours and the paper's."""
    paper = with_averages(dict(PAPER_ROW))
    all_rows = {**rows, PAPER_NAME: paper}
    main = ["multimodal_avg", *MULTIMODAL_AVG, "pure_text_avg", *TEXT_AVG]
    fine = list(FINE)
    out = ["# The paper's scoreboard", ""]
    for title, cols in (
        ("Headline (paper Tables 4 and 6)", main),
        ("Fine-grained (paper Tables 1 and 5)", fine),
    ):
        out += [f"## {title}", "", "| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        out += [f"| {name} | " + " | ".join(_cell(r, c) for c in cols) + " |" for name, r in all_rows.items()]
        out.append("")
    out.append(
        "Percent, unrounded in paper-table.json. multimodal_avg = mean of the four multimodal columns (paper "
        "Table 6), pure_text_avg = mean of RewardBench and RM-Bench; (k/n) marks a mean over the k columns "
        "present. The paper row: arXiv 2509.16127v1 Tables 8-10 and Figure 2 (text, read off the bars); its "
        f"averages are our arithmetic. Tie policy: {ties} ({TIE_RULES[ties]}); each benchmark's report counts "
        "its ties."
    )
    if skipped:
        out += ["", "Skipped: " + "; ".join(f"{s['benchmark']} ({s['reason']})" for s in skipped)]
    return "\n".join(out) + "\n"
