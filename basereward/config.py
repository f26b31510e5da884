"""Training configuration: frozen dataclasses, one documented field per line, YAML + `key=value` overrides.

Configs stop at the entry point: `train.main(cfg)` unpacks these into plain arguments for the components.
A YAML file mirrors the nesting (`model:`, `data:`, `loss:`, `optim:` and the top-level fields); overrides use dotted
keys (`optim.lr=1e-4 model.head.layers=3 max_steps=100`).

`validate` is the one schema check of every YAML file the project reads (training configs, GRPO configs, mixture
recipes in basereward/data/recipe.py): unknown keys with a did-you-mean, wrong types and missing required keys,
each named by file (or override) and dotted key, all problems in one `ConfigError`:

    configs/x.yaml: optim.lrr: unknown key (did you mean 'optim.lr'?)
    configs/x.yaml: batch_size: expected an integer, got 'big'
    configs/x.yaml: model.backbone: missing required key
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from basereward.types import DataError

ACTIVATION_NAMES = ("none", "tanh", "silu", "relu")
PARADIGMS = ("naive", "critic", "generative")  # reward-model paradigms (docs/recipe.md §4)
GENERATIVE_FORMATS = ("seed", "r1")  # the generative judge's answer formats (basereward/model/generative.py)

# Field metadata: a loaded config must set this key (non-empty), though code may build a partial config without
# it, e.g. `TrainConfig(batch_size=8)` in a test.
REQUIRED = {"required": True}


@dataclass(frozen=True)
class HeadConfig:
    layers: int = 2  # number of Linear layers, 1-5
    width: int | None = None  # hidden width of the inner layers; None = the backbone's hidden size
    activation: str = "silu"  # none | tanh | silu | relu
    dropout: float = 0.0  # before each Linear; the paper does not state one

    def __post_init__(self):
        if not 1 <= self.layers <= 5:
            raise ValueError(f"head.layers must be 1-5, got {self.layers}")
        if self.activation not in ACTIVATION_NAMES:
            raise ValueError(
                f"head.activation must be one of {list(ACTIVATION_NAMES)}, got {self.activation!r}"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelArgs:
    # checkpoint directory of the backbone (Hugging Face layout), e.g. a Qwen2.5-VL-7B download
    backbone: str = field(default="", metadata=REQUIRED)
    head: HeadConfig = field(default_factory=HeadConfig)  # the reward head (paper: 2 layers, SiLU)
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2
    max_pixels: int | None = None  # image resolution cap in pixels; None = the checkpoint's processor setting
    min_pixels: int | None = None  # lower bound; None = the checkpoint's processor setting


@dataclass(frozen=True)
class DataArgs:
    train: str = field(default="", metadata=REQUIRED)  # pair JSONL file or built dataset directory
    # same forms; evaluated every eval_every steps and used to calibrate rewards
    validation: str | None = None
    # drop (and count) pairs whose prompt + longer response exceeds this many tokens
    max_length: int | None = None
    on_error: str = "fail"  # fail | skip: what a bad record does (skips are counted and reported)
    drop_ties: bool = True  # drop pairs marked meta.tie before Bradley-Terry training


@dataclass(frozen=True)
class LossArgs:
    use_margin: bool = False  # subtract each pair's `margin` field inside the sigmoid (Llama-2 style)
    center_coef: float = 0.0  # zero-mean coefficient lambda * mean((r_c + r_r)^2); paper final: 0
    length_norm: bool = False  # r / log(len + 1) before the loss; paper final: off


@dataclass(frozen=True)
class OptimArgs:
    lr: float = 3e-6  # peak learning rate (paper: best of {1e-5, 3e-6, 1e-6, 3e-7})
    weight_decay: float = 0.0  # AdamW decoupled weight decay, applied to matrices only (not biases or norms)
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    warmup_ratio: float = 0.05  # share of total steps spent warming up linearly (recipe hint: 0.05)
    warmup_steps: int | None = None  # overrides warmup_ratio when set
    schedule: str = "cosine"  # cosine | linear | constant (after warmup)
    min_lr_ratio: float = 0.0  # the schedule decays to lr * min_lr_ratio
    grad_clip: float = 1.0  # max global gradient norm; 0 disables


@dataclass(frozen=True)
class DistributedArgs:
    # ddp (replicated weights) | fsdp (FSDP2 fully_shard: parameters, gradients, optimizer sharded)
    strategy: str = "ddp"
    backend: str = "auto"  # auto (nccl on CUDA, gloo on CPU) | nccl | gloo
    cpu_offload: bool = False  # fsdp: keep sharded parameters, gradients and optimizer state in CPU memory
    # fsdp: free gathered layers after forward (ZeRO-3); false keeps them (ZeRO-2)
    reshard_after_forward: bool = True
    # collective timeout: a rank that waits longer (a peer died or hung) ends the job with an error
    timeout_s: int = 600


@dataclass(frozen=True)
class LoraArgs:
    # 0 = full fine-tune; > 0 = LoRA adapters of this rank on the language model's linear layers
    rank: int = 0
    alpha: float = 16.0  # LoRA scaling numerator (scale = alpha / rank)
    dropout: float = 0.0  # dropout on the adapter input
    # comma-separated linear layer names
    targets: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"

    def __post_init__(self):
        if self.rank < 0:
            raise ValueError(f"lora.rank must be >= 0, got {self.rank}")
        if self.rank and not [t for t in self.targets.split(",") if t.strip()]:
            raise ValueError("lora.targets must name at least one linear layer")


@dataclass(frozen=True)
class GenerativeArgs:
    # seed: the judge answers "1" or "2" (Seed-1.5-VL); r1: <think>...</think><answer>1|2</answer> (R1-Reward)
    format: str = "seed"
    # r1 inference: reasoning tokens the judge writes (greedy) before its verdict; 0 = an empty think block, so
    # nothing is generated. Saved in basereward.json, where score/eval/serve read it
    think_tokens: int = 0

    def __post_init__(self):
        if self.format not in GENERATIVE_FORMATS:
            raise ValueError(f"generative.format must be one of {GENERATIVE_FORMATS}, got {self.format!r}")
        if self.think_tokens < 0 or (self.think_tokens and self.format != "r1"):
            raise ValueError(
                f"generative.think_tokens must be >= 0, and 0 unless format is r1, got {self.think_tokens}"
            )


@dataclass(frozen=True)
class CriticArgs:
    # weight of the critique cross-entropy beside the Bradley-Terry loss on the head (MM-RLHF-Reward's two losses)
    sft_weight: float = 1.0
    # inference: the critique is generated greedily, at most this many tokens (it stops at the turn's end).
    # Saved in basereward.json, where score/eval/serve read it; training reads the data's critiques whole
    max_critique_tokens: int = 128

    def __post_init__(self):
        if self.sft_weight < 0:
            raise ValueError(f"critic.sft_weight must be >= 0, got {self.sft_weight}")
        if self.max_critique_tokens < 1:
            raise ValueError(f"critic.max_critique_tokens must be >= 1, got {self.max_critique_tokens}")


@dataclass(frozen=True)
class TrainConfig:
    output_dir: str = "runs/rm"  # checkpoints/, final/, metrics.jsonl, tb/ go here
    seed: int = 0  # head init, data order
    model: ModelArgs = field(default_factory=ModelArgs)
    data: DataArgs = field(default_factory=DataArgs)
    loss: LossArgs = field(default_factory=LossArgs)
    optim: OptimArgs = field(default_factory=OptimArgs)
    # used when launched on several processes
    distributed: DistributedArgs = field(default_factory=DistributedArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)  # rank 0 = full fine-tune
    # naive: scalar head + Bradley-Terry (the paper's choice); critic: the LM writes a critique of the response,
    # then the head scores response + critique (basereward/model/critic.py); generative: the LM itself names the
    # better of two responses (basereward/model/generative.py)
    paradigm: str = "naive"
    generative: GenerativeArgs = field(default_factory=GenerativeArgs)  # used by paradigm generative only
    critic: CriticArgs = field(default_factory=CriticArgs)  # used by paradigm critic only
    batch_size: int = 128  # pairs per optimizer step (global) = micro_batch_size x accumulation x world size
    micro_batch_size: int = 4  # pairs per forward/backward
    epochs: float = 1.0  # passes over the training data (fractional allowed)
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    precision: str = "fp32"  # fp32 | bf16 (autocast, fp32 master weights) | bf16-pure (bf16 weights)
    gradient_checkpointing: bool = False  # recompute activations in backward (memory for time)
    freeze_vision: bool = False  # freeze the vision tower blocks (recipe hint: freeze_vit true)
    freeze_aligner: bool = False  # freeze the vision-language merger/projector
    layout: str = "shared"  # shared: one row [prompt | chosen | rejected], image encoded once; padded: a row per response
    eval_every: int = 0  # evaluate on data.validation every N steps (0: only at the end)
    eval_batch_size: int = 16  # sequences per evaluation forward
    max_eval_pairs: int | None = None  # evaluate on at most this many validation pairs (the first ones)
    save_every: int = 0  # write a resumable checkpoint every N steps (0: none)
    keep_checkpoints: int = 2  # how many step checkpoints to keep
    log_every: int = 10  # metrics.jsonl / TensorBoard / progress bar every N steps
    resume: str = "none"  # none | auto (newest checkpoint in output_dir, if any) | a checkpoint directory
    # a step whose loss or gradient norm is NaN/Inf: skip (no update; counted and logged) | stop (error naming it).
    # skip by default: one overflowing batch should not end a week-long run, the update it would make is garbage
    # anyway, and the count in metrics.jsonl and the result shows when skips are more than a rare accident
    nonfinite: str = "skip"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 0  # DataLoader workers that encode images and collate ahead of the model
    tensorboard: bool = True  # also write TensorBoard scalars to output_dir/tb
    progress: bool = True  # show a progress bar on stderr

    def __post_init__(self):
        if self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of micro_batch_size "
                f"({self.micro_batch_size})"
            )
        checks = {
            "paradigm": PARADIGMS,
            "precision": ("fp32", "bf16", "bf16-pure"),
            "layout": ("shared", "padded"),
            "nonfinite": ("skip", "stop"),
        }
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.optim.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(
                f"optim.schedule must be cosine, linear or constant, got {self.optim.schedule!r}"
            )
        if self.distributed.strategy not in ("ddp", "fsdp"):
            raise ValueError(f"distributed.strategy must be ddp or fsdp, got {self.distributed.strategy!r}")
        if self.distributed.backend not in ("auto", "nccl", "gloo"):
            raise ValueError(
                f"distributed.backend must be auto, nccl or gloo, got {self.distributed.backend!r}"
            )
        if self.data.on_error not in ("fail", "skip"):
            raise ValueError(f"data.on_error must be fail or skip, got {self.data.on_error!r}")
        if self.paradigm != "naive":
            self._check_paradigm()

    def _check_paradigm(self) -> None:
        """What the critic and generative paradigms do not have: LoRA (not wired for the LM head yet) and FSDP
        (generation and the LM head are not sharded yet); the generative judge also has no reward head and no
        Bradley-Terry loss options."""
        refused = [
            ("lora.rank", self.lora.rank, 0),
            ("distributed.strategy", self.distributed.strategy, "ddp"),
        ]
        if self.paradigm == "generative":
            refused = [
                ("model.head", self.model.head, HeadConfig()),
                ("loss", self.loss, LossArgs()),
                *refused,
            ]
        unused = [name for name, value, default in refused if value != default]
        if unused:
            why = (
                "no reward head, the loss is the cross-entropy of the answer tokens, no LoRA or FSDP yet"
                if self.paradigm == "generative"
                else "no LoRA or FSDP yet"
            )
            raise ValueError(
                f"paradigm {self.paradigm} does not take {', '.join(unused)} ({why}); leave them at their defaults"
            )

    def grad_accum(self, world_size: int = 1) -> int:
        """Micro-batches per rank per optimizer step; refuses a global batch that does not divide."""
        per_step = self.micro_batch_size * world_size
        if self.batch_size % per_step:
            raise DataError(
                f"batch_size ({self.batch_size}) must be a multiple of micro_batch_size x world size "
                f"({self.micro_batch_size} x {world_size} = {per_step}); change batch_size, "
                "micro_batch_size or the number of processes"
            )
        return self.batch_size // per_step


class ConfigError(DataError):
    """A YAML/JSON value that does not fit its dataclass schema (training config, GRPO config, mixture recipe).
    The message names the file (or the command line) and every problem with its dotted key."""


_SCALARS = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}


def validate(cls, data: Any, *, where: str, origins: dict[str, str] | None = None):
    """Build dataclass `cls` from nested mappings and lists (parsed YAML or JSON), or raise one ConfigError that
    lists every problem: unknown keys (with a did-you-mean), wrong types, missing required keys, and the value
    checks of the dataclasses' own `__post_init__` (their ValueError). `where` names the source (a file); a
    key found in `origins` (dotted key -> source, e.g. a command-line override) is reported with that source."""
    problems: list[tuple[str, str]] = []
    obj = _build(cls, data, "", problems)
    if not problems:
        return obj
    sources = [(origins or {}).get(key, where) for key, _ in problems]
    texts = [f"{key}: {msg}" if key else msg for key, msg in problems]
    if len(set(sources)) == 1:  # the usual case: one file; name it once
        head = f"{sources[0]}: " + (f"{len(texts)} problems: " if len(texts) > 1 else "")
        raise ConfigError(head + "; ".join(texts))
    raise ConfigError(f"{len(texts)} problems: " + "; ".join(f"{o}: {t}" for o, t in zip(sources, texts)))


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _build(cls, data: Any, prefix: str, problems: list) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        problems.append((prefix, f"expected a mapping, got {data!r}"))
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    before = len(problems)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = (
                f"did you mean '{_join(prefix, close[0])}'?"
                if close
                else "valid keys here: " + ", ".join(fields)
            )
            problems.append((_join(prefix, str(key)), f"unknown key ({hint})"))
    kwargs = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name in data:
            kwargs[name] = _value(data[name], hints[name], key, problems)
            if f.metadata.get("required") and data[name] in (None, ""):
                problems.append((key, "required, must not be empty"))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append((key, "missing required key"))
        else:
            _check_required(f, hints[name], key, problems)
    if len(problems) > before:
        return None
    try:
        return cls(**kwargs)
    except ValueError as e:  # a __post_init__ check of a value or of values together
        problems.append((prefix, str(e)))
        return None


def _check_required(f: dataclasses.Field, tp: Any, key: str, problems: list) -> None:
    """A key left out: an error if it is REQUIRED, or if it is a section that holds a REQUIRED key."""
    if f.metadata.get("required"):
        problems.append((key, "missing required key"))
    elif dataclasses.is_dataclass(tp):
        for sub in dataclasses.fields(tp):
            _check_required(sub, typing.get_type_hints(tp)[sub.name], _join(key, sub.name), problems)


def _value(value: Any, tp: Any, key: str, problems: list) -> Any:
    """`value` checked (and where YAML needs it, converted) against annotation `tp`; a mismatch is a problem."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(tp)):
            return None
        for a in args:  # the first member the value fits; the problems of the last one if none does
            trial: list = []
            out = _value(value, a, key, trial)
            if not trial:
                return out
        problems.extend(trial)
        return None
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            problems.append((key, f"expected a list, got {value!r}"))
            return None
        item = typing.get_args(tp)[0] if typing.get_args(tp) else Any
        return origin(_value(v, item, f"{key}[{i}]", problems) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, problems)
    if tp in _SCALARS:
        ok = _scalar(value, tp)
        if ok is None:
            problems.append((key, f"expected {_SCALARS[tp]}, got {value!r}"))
        return ok
    return value


def _scalar(value: Any, tp: type) -> Any:
    if isinstance(value, bool) != (tp is bool):  # YAML's true/false is neither a number nor a string
        return None
    if isinstance(value, tp):
        return value
    if tp is float and isinstance(value, int):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            return None
    return None


def from_dict(cls, data: dict, where: str = "config"):
    """Build dataclass `cls` from a nested dict (a saved run config, say); see `validate`."""
    return validate(cls, data, where=where)


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {k} is not a section")
    node[keys[-1]] = value


def load_yaml(path: str | Path, what: str = "config file") -> dict:
    """A YAML file that must hold a mapping; unreadable or malformed files are a ConfigError naming them."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read {what}: {e}") from e
    if data is None:  # an empty file: every key takes its default (a missing required one is named then)
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} must be a mapping, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None, overrides: list[str] = (), cls=TrainConfig):
    """YAML file (optional) + `key=value` overrides (values parsed as YAML scalars) -> frozen config, validated
    by `validate`: errors name the file, or the override that set the key."""
    import yaml

    data: dict = load_yaml(path) if path is not None else {}
    origins = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, raw = (x.strip() for x in item.split("=", 1))
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: not a YAML value: {e}") from e
        _set_dotted(data, key, value)
        origins[key] = f"override {item!r}"
    return validate(cls, data, where=str(path) if path is not None else "config", origins=origins)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def call_with_flags(fn, flags, /, **given):
    """`fn(...)` with each of its parameters taken from the parsed flag of the same name (`--batch-size` ->
    `batch_size`), unless passed here (a flag named otherwise, or converted). A verb's typed function stays the one
    definition of its inputs and `run(args)` is one line: `call_with_flags(evaluate, args)`."""
    taken = {
        name: getattr(flags, name)
        for name in inspect.signature(fn).parameters
        if name not in given and hasattr(flags, name)
    }
    return fn(**taken, **given)
