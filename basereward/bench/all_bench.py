"""`basereward bench all`: `bench train` then `bench score` with the same options; one JSON object with both."""

from __future__ import annotations

from basereward.bench import common, score_bench, train_bench


def add_args(p) -> None:
    common.add_workload_args(p, {**train_bench.VARIANTS, **score_bench.VARIANTS})
    p.add_argument("--pairs", type=int, help="pairs per step (default 4)")
    p.add_argument("--group", type=int, help="responses per group G (default 8)")


def run(args) -> dict:
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    train_args = _with_variants(args, [v for v in chosen if v in train_bench.VARIANTS])
    score_args = _with_variants(args, [v for v in chosen if v in score_bench.VARIANTS])
    out = train_bench.run(train_args) if train_args.variants else {}
    score = score_bench.run(score_args) if score_args.variants else {}
    machine = {
        **out.get("machine", {}),
        **{f"score_{k}": v for k, v in score.get("machine", {}).items() if k.startswith("load")},
    }
    return {**out, **score, "machine": machine}


def _with_variants(args, variants: list[str]):
    import argparse

    return argparse.Namespace(**{**vars(args), "variants": ",".join(variants)})
