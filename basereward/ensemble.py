"""Ensembles of reward models: the combination arithmetic, the routing rule, `EnsembleScorer`, and the saved
ensemble directory that `load_scorer`, `basereward score / eval / serve --model DIR` accept like a checkpoint
(built by `basereward ensemble`, basereward/ensemble_cli.py; docs/recipe.md §10, the paper's Table 7).

The arithmetic, per response, over members m with weights w_m (`combine`):

    reward = sum_m w_m * z_m(r_m) / sum_m w_m        z_m(r) = (r - mean_m) / std_m under `normalize z`, else r

Weights (`strategy_weights`): `mean` gives every member 1/M (validation-free, the paper's best); `val-acc` makes
w_m proportional to member m's accuracy on a validation pair file; `margin` (the paper's "confidence") to its mean
chosen - rejected margin there, on the scale being combined (divided by std_m under z). A margin <= 0 says the member
ranks the validation pairs no better than chance on average, so it is clipped to weight 0; all clipped is an error.

Routing (`EnsembleScorer.routes_to_text`): with a text model, a text-only sample (no images, no videos) is scored by
the text model alone, raw (the paper's "Average + Qwen3-8B text RM"); every other sample by the members.

`normalized` (the server's second number) is the same weighted combination of each member's own normalized reward
(its checkpoint's validation mean/std), and the text model's own for a text sample (`EnsembleScorer.reduce`).
`EnsembleScorer.normalize(r)`, for a caller holding only the combined reward (`basereward score`), returns r
unchanged, as for a checkpoint without statistics: an ensemble has no scale of its own; `normalize z` gives one.

The directory: `ensemble.json` (fields below, `read_spec` checks every one: a DataError names the file and field),
and with `--copy` the members under `members/`, whose paths are then recorded relative to the directory so it moves
as a unit. Otherwise members are recorded by absolute path.

    members       [{"path": ...}, ...]            checkpoint directories (never other ensembles)
    strategy      "mean" | "val-acc" | "margin"   how the weights were computed
    weights       [w_1, ...]                      one per member, >= 0, sum > 0
    normalize     "none" | "z"
    member_stats  [{"mean", "std", "source"}, ...] or null   z's statistics per member, and where they came from
    text_model    {"path": ...} or null
    validation    {"path", "sha256", "bytes", "pairs", "members": [{"accuracy", "margin", ...}], ...} or null
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from basereward.calibration import normalize as calibrate
from basereward.calibration import sigmoid
from basereward.types import DataError, Sample

ENSEMBLE_FILE = "ensemble.json"
CHECKPOINT_FILE = "basereward.json"  # what makes a directory a member (model/reward_model.META_FILE)
FORMAT_VERSION = 1
STRATEGIES = ("mean", "val-acc", "margin")
NORMALIZE = ("none", "z")


def combine(
    member_rewards: Sequence[Sequence[float]],
    weights: Sequence[float],
    stats: Sequence[dict | None] | None = None,
) -> list[float]:
    """The ensemble reward of each response: `member_rewards[m][k]` is member m's reward of response k; each
    member's reward is standardised with `stats[m]` (mean/std; None leaves it raw), then the weighted mean taken."""
    if len(member_rewards) != len(weights):
        raise ValueError(f"{len(member_rewards)} members' rewards for {len(weights)} weights")
    sizes = {len(r) for r in member_rewards}
    if len(sizes) > 1:
        raise ValueError(f"members scored different numbers of responses: {sorted(sizes)}")
    total = sum(weights)
    if not total > 0:
        raise ValueError(f"weights {list(weights)} sum to {total}, not > 0")
    stats = list(stats) if stats is not None else [None] * len(weights)
    k = sizes.pop() if sizes else 0
    return [
        sum(w * calibrate(r[i], s) for w, r, s in zip(weights, member_rewards, stats)) / total
        for i in range(k)
    ]


def strategy_weights(strategy: str, measured: Sequence[dict] | None, n_members: int) -> list[float]:
    """Weights summing to 1. `measured[m]` holds member m's validation `accuracy` and `margin` (on the combined
    scale); needed by val-acc and margin."""
    if strategy == "mean":
        return [1.0 / n_members] * n_members
    if strategy not in STRATEGIES:
        raise DataError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if not measured:
        raise DataError(f"strategy {strategy} needs validation pairs (--validation PAIRS.jsonl)")
    key = "accuracy" if strategy == "val-acc" else "margin"
    # a member no better than chance on average gets no say (see the module docstring)
    raw = [max(float(m[key]), 0.0) for m in measured]
    if any(math.isnan(x) for x in raw) or sum(raw) <= 0:
        values = [m[key] for m in measured]
        raise DataError(
            f"strategy {strategy}: every member's validation {key} is <= 0 ({values}); no weights"
        )
    return [x / sum(raw) for x in raw]


@dataclass
class EnsembleSpec:
    """The content of ensemble.json; member paths as written (absolute, or relative to the directory)."""

    members: list[str]
    weights: list[float]
    strategy: str = "mean"
    normalize: str = "none"
    member_stats: list[dict] | None = None
    text_model: str | None = None
    validation: dict | None = None
    versions: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "members": [{"path": p} for p in self.members],
            "strategy": self.strategy,
            "weights": self.weights,
            "normalize": self.normalize,
            "member_stats": self.member_stats,
            "text_model": None if self.text_model is None else {"path": self.text_model},
            "validation": self.validation,
            "versions": self.versions,
        }


def is_ensemble_dir(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_FILE).is_file()


def write_spec(directory: str | Path, spec: EnsembleSpec) -> Path:
    """ensemble.json, written whole or not at all (a temporary file renamed)."""
    path = Path(directory) / ENSEMBLE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(spec.to_json(), indent=2) + "\n")
    tmp.replace(path)
    return path


def read_spec(directory: str | Path) -> EnsembleSpec:
    """ensemble.json of `directory`, every field checked (a DataError names the file and the field); member paths
    resolved to absolute ones and checked to be checkpoint directories."""
    d = Path(directory)
    path = d / ENSEMBLE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{d}: no {ENSEMBLE_FILE}; not an ensemble directory (basereward ensemble)")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None

    def bad(name: str, why: str) -> DataError:
        return DataError(f"{path}: field {name}: {why}")

    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    known = {*EnsembleSpec(members=[], weights=[]).to_json()}
    if set(raw) - known:
        raise DataError(f"{path}: unknown fields {sorted(set(raw) - known)} (known: {sorted(known)})")
    version = raw.get("format_version")
    if not _is_int(version) or not 1 <= version <= FORMAT_VERSION:
        raise bad("format_version", f"{version!r} is not a version this library reads (1-{FORMAT_VERSION})")
    members = raw.get("members")
    if not isinstance(members, list) or not members:
        raise bad("members", f"must be a non-empty list of {{'path': DIR}}, got {members!r}")
    paths = [_member_path(d, m, f"members[{i}]", bad) for i, m in enumerate(members)]
    strategy = raw.get("strategy")
    if strategy not in STRATEGIES:
        raise bad("strategy", f"{strategy!r} is not one of {', '.join(STRATEGIES)}")
    weights = raw.get("weights")
    if not isinstance(weights, list) or len(weights) != len(paths):
        n = len(weights) if isinstance(weights, list) else weights
        raise bad("weights", f"must be a list of one number per member ({len(paths)}), got {n!r}")
    for i, w in enumerate(weights):
        if not _is_number(w) or not math.isfinite(w) or w < 0:
            raise bad(f"weights[{i}]", f"must be a finite number >= 0, got {w!r}")
    if not sum(weights) > 0:
        raise bad("weights", "sum to 0: no member counts")
    norm = raw.get("normalize")
    if norm not in NORMALIZE:
        raise bad("normalize", f"{norm!r} is not one of {', '.join(NORMALIZE)}")
    stats = raw.get("member_stats")
    if norm == "z":
        if not isinstance(stats, list) or len(stats) != len(paths):
            raise bad("member_stats", f"normalize z needs one {{mean, std}} per member, got {stats!r}")
        for i, s in enumerate(stats):
            ok = isinstance(s, dict) and _is_number(s.get("mean")) and _is_number(s.get("std"))
            if not ok or not s["std"] > 0 or not math.isfinite(s["mean"]):
                raise bad(f"member_stats[{i}]", f"needs a finite mean and a std > 0, got {s!r}")
    elif stats is not None and not isinstance(stats, list):
        raise bad("member_stats", f"must be a list or null, got {stats!r}")
    text = raw.get("text_model")
    text_path = None if text is None else _member_path(d, text, "text_model", bad)
    for name in ("validation", "versions"):
        if raw.get(name) is not None and not isinstance(raw[name], dict):
            raise bad(name, f"must be an object or null, got {raw[name]!r}")
    return EnsembleSpec(
        members=paths,
        weights=[float(w) for w in weights],
        strategy=strategy,
        normalize=norm,
        member_stats=stats if norm == "z" else None,
        text_model=text_path,
        validation=raw.get("validation"),
        versions=raw.get("versions") or {},
    )


def _member_path(directory: Path, entry, name: str, bad) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"]:
        raise bad(name, f"must be {{'path': DIR}}, got {entry!r}")
    p = Path(entry["path"])
    p = p if p.is_absolute() else directory / p  # copied members live under the ensemble directory
    if not p.is_dir():
        raise bad(f"{name}.path", f"{p} does not exist")
    if (p / ENSEMBLE_FILE).is_file():
        raise bad(f"{name}.path", f"{p} is itself an ensemble; list its members instead")
    if not (p / CHECKPOINT_FILE).is_file():
        raise bad(f"{name}.path", f"{p} has no {CHECKPOINT_FILE}; not a basereward checkpoint")
    return str(p.resolve())


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


Rewarder = Callable[
    [Sequence[Sample]], list[list[float]]
]  # scoring.Scorer (not imported: scoring imports us)


class EnsembleScorer:
    """Several scorers as one: `scorer(samples) -> [[reward per response] per sample]` (the Scorer protocol).

    `members` are scorers (RewardScorers when loaded from a directory), `weights` default to equal (the mean),
    `stats` are the per-member z statistics (None: raw rewards combined). `text_scorer` takes the text-only samples.
    `member_dirs` / `text_dir` name where each came from (the server's /health and revision); `directory` is the
    ensemble directory when loaded from one."""

    def __init__(
        self,
        members: Sequence[Rewarder],
        weights: Sequence[float] | None = None,
        *,
        stats: Sequence[dict] | None = None,
        text_scorer: Rewarder | None = None,
        member_dirs: Sequence[str | Path] = (),
        text_dir: str | Path | None = None,
        directory: str | Path | None = None,
        strategy: str = "mean",
    ):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = list(members)
        self.weights = list(weights) if weights is not None else [1.0 / len(members)] * len(members)
        if len(self.weights) != len(self.members):
            raise ValueError(f"{len(self.weights)} weights for {len(self.members)} members")
        self.stats = list(stats) if stats is not None else None
        self.text_scorer = text_scorer
        self.member_dirs = [Path(d) for d in member_dirs] or [None] * len(self.members)
        self.text_dir = Path(text_dir) if text_dir is not None else None
        self.directory = Path(directory) if directory is not None else None
        self.strategy = strategy

    def routes_to_text(self, sample: Sample) -> bool:
        """The routing rule: a text-only sample goes to the text model, when there is one."""
        return self.text_scorer is not None and not sample.images and not sample.videos

    def reduce(self, member_rewards: Sequence[Sequence[float]]) -> tuple[list[float], list[float]]:
        """(raw, normalized) per response from each member's rewards of them (`member_rewards[m][k]`)."""
        raw = combine(member_rewards, self.weights, self.stats)
        own = [_calibration(m) for m in self.members]
        return raw, combine(member_rewards, self.weights, own)

    def reduce_text(self, rewards: Sequence[float]) -> tuple[list[float], list[float]]:
        """(raw, normalized) of a text-routed sample's responses: the text model's own."""
        stats = _calibration(self.text_scorer)
        return list(rewards), [calibrate(r, stats) for r in rewards]

    def score(self, samples: Sequence[Sample]) -> tuple[list[list[float]], list[list[float]]]:
        """(raw, normalized) rewards per sample; each model scores only the samples routed to it, in one call."""
        to_text = [self.routes_to_text(s) for s in samples]
        text = [i for i, t in enumerate(to_text) if t]
        multi = [i for i, t in enumerate(to_text) if not t]
        raw: list[list[float]] = [[] for _ in samples]
        norm: list[list[float]] = [[] for _ in samples]
        if text:
            for i, r in zip(text, self.text_scorer([samples[i] for i in text])):
                raw[i], norm[i] = self.reduce_text(r)
        if multi:
            batch = [samples[i] for i in multi]
            per_member = [m(batch) for m in self.members]  # per_member[m][sample][response]
            for j, i in enumerate(multi):
                raw[i], norm[i] = self.reduce([rewards[j] for rewards in per_member])
        return raw, norm

    def __call__(self, samples: Sequence[Sample], progress: bool | None = None) -> list[list[float]]:
        # `progress` is accepted for callers written for RewardScorer; members keep their own setting
        return self.score(samples)[0]

    def score_group(self, prompt: list[dict], responses: list[str], images=(), videos=()) -> list[float]:
        return self([Sample(list(prompt), list(responses), list(images), list(videos))])[0]

    def normalize(self, reward: float) -> float:
        return reward  # no scale of its own (module docstring); `normalize z` combines standardised rewards

    sigmoid = staticmethod(sigmoid)


def _calibration(scorer) -> dict | None:
    """A RewardScorer's checkpoint statistics (its `normalize`); a stand-in scorer without a model has none."""
    return getattr(getattr(scorer, "model", None), "reward_stats", None)


def load_ensemble(directory: str | Path, load_member: Callable[[str], Rewarder]) -> EnsembleScorer:
    """The ensemble directory as an EnsembleScorer, each member loaded with `load_member(path)` (scoring.load_scorer
    with the caller's device and batch settings)."""
    spec = read_spec(directory)
    return EnsembleScorer(
        [load_member(p) for p in spec.members],
        spec.weights,
        stats=spec.member_stats,
        text_scorer=load_member(spec.text_model) if spec.text_model else None,
        member_dirs=spec.members,
        text_dir=spec.text_model,
        directory=directory,
        strategy=spec.strategy,
    )


def served_ensemble(
    scorer: Rewarder,
    model_dir: str | Path,
    ensemble: Sequence[tuple[Rewarder, str | Path]],
    text_scorer: tuple[Rewarder, str | Path] | None,
) -> EnsembleScorer:
    """What the server serves, as one EnsembleScorer: an ensemble directory's as loaded, or the plain mean of the
    main model and `ensemble` (`serve --ensemble-model`), `text_scorer` taking the text-only samples (`--text-model`);
    one model alone is an ensemble of one (weight 1: its rewards unchanged)."""
    if isinstance(scorer, EnsembleScorer):
        if ensemble or text_scorer is not None:
            raise extra_models_error(model_dir)
        return scorer
    scorers = [scorer, *(s for s, _ in ensemble)] + ([text_scorer[0]] if text_scorer is not None else [])
    if any(isinstance(s, EnsembleScorer) for s in scorers):
        raise DataError(
            "--ensemble-model / --text-model take checkpoint directories, not ensemble directories"
        )
    return EnsembleScorer(
        [scorer, *(s for s, _ in ensemble)],
        member_dirs=[model_dir, *(d for _, d in ensemble)],
        text_scorer=text_scorer[0] if text_scorer is not None else None,
        text_dir=text_scorer[1] if text_scorer is not None else None,
    )


def extra_models_error(model_dir: str | Path) -> DataError:
    return DataError(
        f"{model_dir} is an ensemble directory: its members and text model are listed in its {ENSEMBLE_FILE}; "
        "build another with `basereward ensemble` instead of adding --ensemble-model / --text-model"
    )
