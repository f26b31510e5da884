"""Benchmark evaluation: loaders for the three multimodal reward benchmarks (and our pair JSONL), the official
metrics as pure functions, and the report writer. `basereward eval` (evaluate.py) is the entry point; other code
calls `basereward.data.benchmarks.load_benchmark` and `basereward.eval.metrics` directly.
"""
