"""The `basereward` command: one table of verbs. Each verb's module is imported only when that verb runs, so
`basereward --help` stays fast and never imports torch.

A verb module provides `add_args(parser)` and `run(args) -> dict | None`. A returned dict is printed as the last
stdout line, as one JSON object (the contract every result-producing verb keeps).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

# verb -> (module, one-line help). Two-word verbs ("data synth") are sub-verbs of a group.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("basereward.demo", "init-tiny -> synth -> train -> evaluate, offline, on the embedded default"),
    "init-tiny": (
        "basereward.tiny",
        "write a randomly initialised tiny Qwen2.5-VL / Qwen2-VL / Qwen2 checkpoint",
    ),
    "train": ("basereward.train", "train a reward model: --config FILE [key=value ...]"),
    "score": ("basereward.score_cli", "score pair JSONL with a trained model"),
    "ensemble": (
        "basereward.ensemble_cli",
        "save several reward models as one (mean / val-acc / margin weights)",
    ),
    "export": (
        "basereward.export",
        "merge LoRA adapters into a plain checkpoint; --format hf for stock transformers",
    ),
    "plan": ("basereward.plan", "memory per GPU for a training run (from a config.json alone): does it fit?"),
    "serve": ("basereward.serve.cli", "serve a reward model over HTTP to RL frameworks (OpenRLHF, verl...)"),
    "grpo": ("basereward.rl.grpo", "GRPO demo: TRL GRPOTrainer, tiny VL policy, hybrid BaseReward reward"),
    "eval": (
        "basereward.eval.evaluate",
        "evaluate on VL-RewardBench / Multimodal RewardBench / MM-RLHF / pairs",
    ),
    "data synth": (
        "basereward.data.synthetic",
        "write synthetic image-grounded + text-only preference pairs",
    ),
    "data convert": (
        "basereward.data.convert",
        "convert a public preference dataset's download into pair shards",
    ),
    "data build": ("basereward.data.mixture", "build a training mixture from a recipe (configs/data/*.yaml)"),
    "data split": ("basereward.data.split", "split pairs into train/validation by prompt+image hash"),
    "data decontam": (
        "basereward.data.decontam",
        "find/remove training pairs whose prompt+image is in a benchmark",
    ),
    "bench train": (
        "basereward.bench.train_bench",
        "benchmark pair training: naive, padded, prefix-shared, TRL",
    ),
    "bench score": ("basereward.bench.score_bench", "benchmark GRPO group scoring: naive vs prefix-shared"),
    "bench all": ("basereward.bench.all_bench", "bench train + bench score, one JSON line"),
    "bench scale": (
        "basereward.bench.scale_bench",
        "training pairs/s at 1 and N processes, scaling efficiency",
    ),
    "bench paradigms": (
        "basereward.bench.paradigms_bench",
        "naive vs critic vs generative RM vs ensemble: accuracy and cost, one table + PNG",
    ),
}


# an optional package -> the extra of pyproject.toml that installs it, for the one-line error a verb gives when
# it needs a package the user's install left out (httpx is in both serve and rl: the verb decides)
EXTRAS = {
    "fastapi": "serve",
    "uvicorn": "serve",
    "pydantic": "serve",
    "prometheus_client": "serve",
    "httpx": "rl",
    "trl": "rl",
    "matplotlib": "eval",
}


def _missing_extra(verb: str, err: ModuleNotFoundError) -> str | None:
    package = (err.name or "").partition(".")[0]
    extra = "serve" if verb == "serve" and package == "httpx" else EXTRAS.get(package)
    if extra is None:
        return None
    return f"{package} is not installed; `basereward {verb}` needs it: pip install 'basereward[{extra}]'"


def _usage() -> str:
    width = max(len(v) for v in COMMANDS)
    rows = "\n".join(f"  {verb:<{width}}  {help_}" for verb, (_, help_) in COMMANDS.items())
    return (
        "usage: basereward VERB [options]   (basereward VERB --help for a verb's options)\n\n"
        f"verbs:\n{rows}\n\nEvery verb that produces results ends its stdout with one JSON object."
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    verb = argv[0]
    if len(argv) > 1 and f"{argv[0]} {argv[1]}" in COMMANDS:
        verb, rest = f"{argv[0]} {argv[1]}", argv[2:]
    elif verb in COMMANDS:
        rest = argv[1:]
    else:
        group = [v for v in COMMANDS if v.startswith(verb + " ")]
        if group:
            print(
                f"basereward {verb}: choose one of: {', '.join(v.split(' ', 1)[1] for v in group)}",
                file=sys.stderr,
            )
        else:
            print(f"basereward: unknown verb {verb!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, help_ = COMMANDS[verb]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if (message := _missing_extra(verb, e)) is None:
            raise
        print(f"basereward {verb}: error: {message}", file=sys.stderr)
        return 1
    parser = argparse.ArgumentParser(prog=f"basereward {verb}", description=help_)
    module.add_args(parser)
    args = parser.parse_args(rest)
    from basereward.types import DataError

    try:
        result = module.run(args)
    except ModuleNotFoundError as e:  # an optional package the verb needs (see EXTRAS)
        if (message := _missing_extra(verb, e)) is None:
            raise
        print(f"basereward {verb}: error: {message}", file=sys.stderr)
        return 1
    # bad input or a missing path: one line naming it, no traceback
    except (DataError, FileNotFoundError) as e:
        print(f"basereward {verb}: error: {e}", file=sys.stderr)
        return 1
    if "torch" in sys.modules and sys.modules["torch"].distributed.is_initialized():
        # a verb run under torchrun joined a process group: leave it together (barrier + destroy), or gloo aborts
        from basereward.distributed import shutdown

        shutdown()
    if result is not None:
        sys.stdout.flush()
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
