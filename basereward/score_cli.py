"""`basereward score`: rewards for every pair of a pair JSONL file (or built dataset), through the scoring path.

    basereward score --model runs/demo/train/final --input pairs.jsonl --output scores.jsonl
    torchrun --nproc_per_node 8 -m basereward score --model runs/demo/train/final --input pairs.jsonl

Each output line: {"id", "reward_chosen", "reward_rejected", "normalized_chosen", "normalized_rejected",
"correct"}; `normalized` uses the checkpoint's validation mean/std. A critic checkpoint (`paradigm: critic`) adds
"critique_chosen" and "critique_rejected": the critiques it wrote before scoring each response. The output is written to a temporary file and
renamed at the end, so an interrupted run never leaves a partial file behind as if complete. Under torchrun each
rank scores its share of the pairs (eval/distributed_scoring.py) and rank 0 writes the same file one process
writes. From Python: `score(model=..., input=..., output=...)`; `run(args)` only maps the command line onto it.
"""

from __future__ import annotations

import json
from pathlib import Path

from basereward.config import call_with_flags


def add_args(p) -> None:
    p.add_argument("--model", required=True, help="trained reward-model directory")
    p.add_argument("--input", required=True, help="pair JSONL file or built dataset directory")
    p.add_argument("--output", help="scores JSONL (default: <input stem>.scores.jsonl beside the input)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per forward")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    p.add_argument(
        "--on-error", default="fail", choices=["fail", "skip"], help="bad records: fail or skip+count"
    )


def run(args) -> dict | None:
    return call_with_flags(score, args)


def score(
    *,
    model: str | Path,
    input: str | Path,
    output: str | Path | None = None,
    batch_size: int = 16,
    device: str | None = None,
    on_error: str = "fail",
) -> dict | None:
    """Score every pair of `input` with the checkpoint `model`, write the scores JSONL (default: beside the input)
    and return the summary line of `basereward score`. Under torchrun every rank calls this; rank 0 writes the
    file and returns the summary, the others None."""
    from basereward.data.io import LoadStats
    from basereward.data.store import open_pairs
    from basereward.eval.distributed_scoring import join, score_sharded
    from basereward.scoring import load_scorer, pair_stats

    stats = LoadStats()
    # every rank reads and checks the input alike, before joining the process group: bad input fails them all
    pairs = open_pairs(input, on_error=on_error, stats=stats)
    ranks = join(device or "auto")
    scorer = load_scorer(model, device=str(ranks.device), batch_size=batch_size, progress=False)
    # units of batch_size pairs: two forwards of batch_size sequences each
    rewards, seconds = score_sharded(
        pairs, lambda batch: score_batch(scorer, batch), batch_size, desc="scoring"
    )
    if rewards is None:
        return None  # rank > 0: its rewards are with rank 0, which writes the file
    out = Path(output) if output else Path(input).with_suffix(".scores.jsonl")
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for p, (c, r, critiques) in zip(pairs, rewards):
            rec = {
                "id": p.id,
                "reward_chosen": c,
                "reward_rejected": r,
                "normalized_chosen": scorer.normalize(c),
                "normalized_rejected": scorer.normalize(r),
                "correct": c > r,
                **(dict(zip(("critique_chosen", "critique_rejected"), critiques)) if critiques else {}),
            }
            f.write(json.dumps(rec) + "\n")
    tmp.replace(out)
    summary = pair_stats([x[0] for x in rewards], [x[1] for x in rewards])
    timing = {"pairs_per_s": len(pairs) / seconds if seconds > 0 else None, "world_size": ranks.world_size}
    return {
        "output": str(out),
        "skipped": stats.n_skipped,
        "skipped_by_reason": dict(stats.skipped),
        **summary,
        **timing,
    }


def score_batch(scorer, pairs) -> list[tuple[float, float, tuple[str, str] | None]]:
    """(chosen reward, rejected reward, the two critiques or None) per pair, through the scoring path (pairs merged
    by prompt, `scoring.score_pairs`); a critic's scorer also returns the critiques it wrote."""
    from basereward.scoring import merge_pairs, pair_rewards, score_pairs

    if not hasattr(scorer, "score_with_critiques"):
        return [(c, r, None) for c, r in score_pairs(scorer, pairs)]
    samples, where = merge_pairs(pairs)
    rewards, texts = scorer.score_with_critiques(samples, progress=False)
    return [
        (c, r, (texts[s][i], texts[s][j])) for (c, r), (s, i, j) in zip(pair_rewards(rewards, where), where)
    ]
