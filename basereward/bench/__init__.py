"""Benchmarks of the prefix-shared layout (docs/performance.md §5-6).

    basereward bench train   pair training: naive B0 / padded B1 / shared T4 / shared + frozen vision T5 / TRL
    basereward bench score   group scoring: naive S0 / padded S1 / shared S3
    basereward bench all     both, one JSON line with every key

Modules: `common` (fresh-subprocess runs, interleaving, statistics, gates, tables), `worker` (the process that
runs variants), `data` (deterministic workloads), `flops` (the analytic FLOP model), `train_bench`, `score_bench`,
`trl_peer` (TRL's RewardTrainer with the wrapper it needs), `all_bench`. The GPU protocol lives in
scripts/gpu_bench.py.
"""
