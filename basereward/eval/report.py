"""The evaluation report in `--out`: `metrics.json` (every number with its counts, ties, category map, scorer,
data checksums), `report.md` (tables in the papers' layouts with the length-baseline row beside the model) and three
PNG plots (per-category accuracy; preferred vs rejected reward histogram; reward vs response length with Pearson
and Spearman correlations). Plots use matplotlib's Agg backend, so no display is needed. matplotlib comes with
the `eval` extra; without it the report is written all the same, with `PLOTS_SKIPPED` in place of the plots
(the numbers are the result, the plots only show them), and one line on stderr says so.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from basereward.eval.metrics import Result, pearson, spearman
from basereward.eval.tally import TIE_RULES
from basereward.types import PreferencePair

# Multimodal RewardBench's seven categories as the RM papers report them (Mean7 = their unweighted mean)
MMRB_SEVEN = [
    ("Correctness", "general_correctness"),
    ("Preference", "general_preference"),
    ("Knowledge", "knowledge"),
    ("Math", "reasoning_math"),
    ("Coding", "reasoning_coding"),
    ("Safety", "safety"),
    ("VQA", "vqa"),
]

RB_SECTIONS = [("Chat", "chat"), ("Chat Hard", "chat_hard"), ("Safety", "safety"), ("Reasoning", "reasoning")]
RMB_DOMAINS = [("Chat", "chat"), ("Code", "code"), ("Math", "math"), ("Safety", "safety")]

# benchmark -> tables, each (title, [(column header, headline key)]), in the layout its papers print.
LAYOUTS: dict[str, list[tuple[str, list[tuple[str, str]]]]] = {
    "vl-rewardbench": [
        (
            "VL-RewardBench (Overall = micro over pairs; Macro = mean of the 3 groups)",
            [
                ("General", "general"),
                ("Hallucination", "hallucination"),
                ("Reasoning", "reasoning"),
                ("Overall Acc", "overall"),
                ("Macro Avg Acc", "macro"),
            ],
        ),
    ],
    "multimodal-rewardbench": [
        (
            "Official README layout (Overall = micro over all rows)",
            [
                ("Overall", "overall"),
                ("Correctness", "general_correctness"),
                ("Preference", "general_preference"),
                ("Knowledge", "knowledge"),
                ("Reasoning", "reasoning"),
                ("Safety", "safety"),
                ("VQA", "vqa"),
            ],
        ),
        (
            "RM-paper layout, paper-style (Overall = unweighted mean of these 7 columns)",
            [
                *MMRB_SEVEN,
                ("Mean7", "mean7"),
            ],
        ),
    ],
    "mm-rlhf-rewardbench": [
        (
            "MM-RLHF-RewardBench (Acc = pairs right; Acc+ = query ids with every pair right)",
            [
                ("mcq", "mcq"),
                ("long", "long"),
                ("short", "short"),
                ("safety", "safety"),
                ("video", "video"),
                ("Acc", "acc"),
                ("Acc+", "acc_plus"),
            ],
        ),
    ],
    "rewardbench": [
        (
            "RewardBench (Score = mean of the 4 sections; a section = EXAMPLE_COUNTS-weighted subset accuracy)",
            [*RB_SECTIONS, ("Score", "score")],
        ),
    ],
    "rm-bench": [
        (
            "RM-Bench (domain = mean of its 3x3 style matrix; Easy / Normal / Hard and Overall over the domains "
            "present)",
            [*RMB_DOMAINS, ("Easy", "easy"), ("Normal", "normal"), ("Hard", "hard"), ("Overall", "overall")],
        ),
    ],
    "pairs": [("Pair accuracy", [("Accuracy", "accuracy")])],
}

TITLES = {
    "vl-rewardbench": "VL-RewardBench",
    "multimodal-rewardbench": "Multimodal RewardBench",
    "mm-rlhf-rewardbench": "MM-RLHF-RewardBench",
    "rewardbench": "RewardBench",
    "rm-bench": "RM-Bench",
    "pairs": "Pair JSONL",
}


@dataclass
class Run:
    """One scorer's outcome on the benchmark: its label, metrics and per-pair rewards (preferred, rejected)."""

    label: str
    result: Result
    pref: list[float]
    rej: list[float]


def fmt(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def markdown_tables(benchmark: str, runs: list[Run]) -> str:
    """The headline tables, one row per run (the tables printed on stdout and at the top of report.md)."""
    out = []
    for title, cols in LAYOUTS[benchmark]:
        n_key = "n_pairs" if benchmark == "mm-rlhf-rewardbench" else "n"
        header = ["Model", *(h for h, _ in cols), "n", "ties"]
        out += [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for run in runs:
            h = run.result.headline
            cells = [run.label, *(fmt(h.get(k)) for _, k in cols), str(h[n_key]), str(h["ties"])]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _category_table(run: Run) -> list[str]:
    rows = ["| Category | Right / pairs | Accuracy | Ties |", "|---|---|---|---|"]
    for name, t in sorted(run.result.categories.items()):
        rows.append(f"| {name} | {t.correct:g} / {t.n} | {fmt(t.accuracy)} | {t.ties} |")
    return rows


def write_report(
    out_dir: str | Path,
    *,
    benchmark: str,
    main: Run,
    baseline: Run | None,
    lengths: tuple[list[int], list[int]],
    info: dict,
    alternatives: dict[str, tuple[str, Result]] | None = None,
    pairs: Sequence[PreferencePair] | None = None,
) -> dict[str, str]:
    """Write metrics.json, report.md and the PNGs; returns {name: path}. `lengths` are the character lengths of the
    preferred and rejected responses; `alternatives` maps a category-map name to (description, Result). With
    `pairs` (the scored pairs, in the order of the rewards) report.html is written too (eval/html_report.py)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    all_rewards = main.pref + main.rej
    all_lengths = [float(x) for x in lengths[0] + lengths[1]]
    corr = {"pearson": pearson(all_lengths, all_rewards), "spearman": spearman(all_lengths, all_rewards)}

    def block(run: Run) -> dict:
        return {
            "label": run.label,
            "metrics": run.result.headline,
            "categories": {k: t.as_dict() for k, t in sorted(run.result.categories.items())},
            **run.result.extra,
        }

    doc = {
        **info,
        "benchmark": benchmark,
        "policy": "pair right iff reward(preferred) > reward(rejected); "
        f"{TIE_RULES[info.get('tie_policy', 'wrong')]} (--ties {info.get('tie_policy', 'wrong')}), and are counted",
        "metrics": main.result.headline,
        "result": block(main),
        "baseline_length": block(baseline) if baseline else None,
        "reward_vs_length": corr,
        "alternative_category_maps": {
            name: {"description": desc, **block(Run(name, res, [], []))}
            for name, (desc, res) in (alternatives or {}).items()
        },
    }
    paths = {"metrics.json": out / "metrics.json", "report.md": out / "report.md"}
    paths["metrics.json"].write_text(json.dumps(doc, indent=2, default=str) + "\n")

    runs = [main] + ([baseline] if baseline else [])
    plots = _pyplot() is not None
    if plots:
        paths["category_accuracy.png"] = plot_category_accuracy(
            out / "category_accuracy.png", benchmark, runs, info.get("tie_policy", "wrong")
        )
        paths["reward_hist.png"] = plot_reward_hist(out / "reward_hist.png", main)
        paths["reward_vs_length.png"] = plot_reward_vs_length(
            out / "reward_vs_length.png", main, lengths, corr
        )
    else:
        print(f"basereward eval: {PLOTS_SKIPPED}", file=sys.stderr)
    paths["report.md"].write_text(_markdown(benchmark, runs, info, corr, alternatives or {}, plots))
    if pairs is not None:
        # imported here: html_report imports this module
        from basereward.eval.html_report import write_html_report

        paths["report.html"] = write_html_report(
            out / "report.html",
            benchmark=benchmark,
            pairs=pairs,
            main=main,
            baseline=baseline,
            info=info,
            markdown=paths["report.md"].read_text(),
        )
    return {k: str(v) for k, v in paths.items()}


def _markdown(benchmark, runs, info, corr, alternatives, plots: bool = True) -> str:
    main, policy = runs[0], info.get("tie_policy", "wrong")
    data = ", ".join(f"`{d['path']}` (sha256 `{d['sha256'][:16]}…`)" for d in info.get("data", []))
    lines = [
        f"# {TITLES[benchmark]}: {main.label}",
        "",
        f"- Data: {data}" + (f"; first {info['limit']} pairs only (`--limit`)" if info.get("limit") else ""),
        f"- Scorer: {info.get('scorer')}" + (f" (`{info['model']}`)" if info.get("model") else ""),
        f"- Category map: {info['category_map']['name']} ({info['category_map']['description']})",
        f"- Rule: a pair is right iff reward(preferred) > reward(rejected); {TIE_RULES[policy]} "
        f"(`--ties {policy}`); {main.result.headline.get('ties', 0)} tie(s), the `ties` column.",
        "- `length` = the response's length in characters: the benchmark's length bias, no model involved.",
        "",
        markdown_tables(benchmark, runs),
    ]
    extra = main.result.extra
    if benchmark == "mm-rlhf-rewardbench":
        acc_plus = extra["acc_plus_by_category"]
        lines += [
            "**Acc+ per category** (query ids with every pair right / ids with a pair in the category)",
            "",
            "| " + " | ".join(acc_plus) + " |",
            "|" + "---|" * len(acc_plus),
            "| " + " | ".join(fmt(v) for v in acc_plus.values()) + " |",
            "",
        ]
    if alternatives:
        cols = LAYOUTS["vl-rewardbench"][0][1]
        lines += [
            "**Other category maps** (same pairs and rewards; groups and Macro differ between maps, so only "
            "Overall is comparable across papers; `official` is the VL-RewardBench paper's split)",
            "",
            "| Map | " + " | ".join(h for h, _ in cols) + " | Groups (n) |",
            "|---|" + "---|" * (len(cols) + 1),
        ]
        for name, (desc, res) in alternatives.items():
            sizes = "/".join(
                str(res.categories[g].n) if g in res.categories else "0"
                for g in ("general", "hallucination", "reasoning")
            )
            lines.append(
                f"| {name}: {desc} | " + " | ".join(fmt(res.headline[k]) for _, k in cols) + f" | {sizes} |"
            )
        lines.append("")
    if extra.get("duplicate_pair_keys"):
        lines += [
            f"- {extra['duplicate_pair_keys']} row(s) repeat an earlier pair key (id, query, responses): counted once.",
            "",
        ]
    lines += [f"**Per category, {main.label}**", "", *_category_table(main), ""]
    lines += [
        f"Reward vs response length over all responses: Pearson r = {fmt(corr['pearson'])}, "
        f"Spearman rho = {fmt(corr['spearman'])}.",
        "",
        *(
            [
                "![per-category accuracy](category_accuracy.png)",
                "![rewards of preferred and rejected responses](reward_hist.png)",
                "![reward vs response length](reward_vs_length.png)",
            ]
            if plots
            else [PLOTS_SKIPPED]
        ),
        "",
    ]
    if info.get("warnings"):
        lines += ["**Warnings**", "", *(f"- {w}" for w in info["warnings"]), ""]
    return "\n".join(lines)


# --- plots -----------------------------------------------------------------------------------------------------


PLOTS_SKIPPED = "Plots skipped: matplotlib is not installed (`pip install 'basereward[eval]'` adds it)."


def _pyplot():
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed (an optional extra)."""
    try:
        import matplotlib
    except ModuleNotFoundError as e:
        # matplotlib is there but one of its own imports fails: show that, do not call it "not installed"
        if e.name != "matplotlib":
            raise
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# benchmark -> (per-category bars, aggregate bars), as (label, headline key)
BARS = {
    "vl-rewardbench": (
        [("General", "general"), ("Hallucination", "hallucination"), ("Reasoning", "reasoning")],
        [("Overall", "overall"), ("Macro", "macro")],
    ),
    "multimodal-rewardbench": (
        MMRB_SEVEN,
        [("Overall (micro)", "overall"), ("Mean7", "mean7")],
    ),
    "mm-rlhf-rewardbench": (
        [("mcq", "mcq"), ("long", "long"), ("short", "short"), ("safety", "safety"), ("video", "video")],
        [("Acc", "acc"), ("Acc+", "acc_plus")],
    ),
    "rewardbench": (RB_SECTIONS, [("Score", "score")]),
    "rm-bench": (
        RMB_DOMAINS,
        [("Easy", "easy"), ("Normal", "normal"), ("Hard", "hard"), ("Overall", "overall")],
    ),
}


def _bar_columns(benchmark: str, run: Run) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    if benchmark == "pairs":
        return [(name, name) for name in sorted(run.result.categories)], [("all", "accuracy")]
    return BARS[benchmark]


def plot_category_accuracy(path: Path, benchmark: str, runs: list[Run], ties: str = "wrong") -> Path:
    plt = _pyplot()
    per_category, aggregates = _bar_columns(benchmark, runs[0])
    cols = per_category + aggregates

    def value(run: Run, key: str):
        if benchmark == "pairs" and key != "accuracy":
            return run.result.categories[key].accuracy
        return run.result.headline.get(key)

    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(cols) + 2), 4.2))
    width = 0.8 / len(runs)
    for j, run in enumerate(runs):
        xs = [i + (j - (len(runs) - 1) / 2) * width for i in range(len(cols))]
        vals = [value(run, k) for _, k in cols]
        bars = ax.bar(
            xs, [v or 0.0 for v in vals], width, label=run.label, color=["tab:blue", "tab:gray"][j % 2]
        )
        for bar, v in zip(bars, vals):
            ax.annotate(
                fmt(v),
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 2),
                textcoords="offset points",
            )
    ax.axhline(50, color="tab:red", lw=0.8, ls="--", label="chance (50)")
    ax.axvline(len(per_category) - 0.5, color="black", lw=0.6, ls=":")  # categories | aggregates
    ax.set_xticks(range(len(cols)), [h for h, _ in cols], rotation=20, ha="right")
    ax.set_ylim(0, 125)  # headroom so the legend never covers a 100 % bar's label
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{TITLES[benchmark]}: accuracy per category ({TIE_RULES[ties]})")
    ax.legend(fontsize=8, loc="upper left", ncols=len(runs) + 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reward_hist(path: Path, run: Run) -> Path:
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    finite = [v for v in run.pref + run.rej if np.isfinite(v)]
    bins = np.histogram_bin_edges(finite, bins=min(40, max(10, len(finite) // 10))) if finite else 10
    ax.hist(
        [v for v in run.pref if np.isfinite(v)], bins=bins, alpha=0.55, label="preferred", color="tab:green"
    )
    ax.hist([v for v in run.rej if np.isfinite(v)], bins=bins, alpha=0.55, label="rejected", color="tab:red")
    h = run.result.headline
    acc = h.get("accuracy", h.get("overall", h.get("acc")))
    ax.set_title(
        f"Rewards, preferred vs rejected: {run.label}\naccuracy {fmt(acc)} %, {h['ties']} ties", fontsize=10
    )
    ax.set_xlabel("reward")
    ax.set_ylabel("responses")
    ax.yaxis.get_major_locator().set_params(integer=True)  # counts: no 0.5 ticks on small sets
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reward_vs_length(path: Path, run: Run, lengths: tuple[list[int], list[int]], corr: dict) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.scatter(lengths[0], run.pref, s=10, alpha=0.6, label="preferred", color="tab:green", marker="o")
    ax.scatter(lengths[1], run.rej, s=12, alpha=0.6, label="rejected", color="tab:red", marker="x")
    # linear axes on purpose: Pearson measures a linear relation, and the plot should show what it measures
    ax.set_xlabel("response length (characters)")
    ax.set_ylabel("reward")
    ax.set_title(
        f"Reward vs response length: {run.label}\n"
        f"Pearson r = {fmt(corr['pearson'])}, Spearman rho = {fmt(corr['spearman'])} (all responses)",
        fontsize=10,
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
