"""Write synthetic grounded pairs in each benchmark's official on-disk schema, so the demo can run the real
benchmark loaders, metrics and reports end to end on a model that has never seen the real (undownloadable) sets.

- VL-RewardBench, the original GitHub JSONL (`image_path`, `response` in random order, `human_ranking`); the group
  comes from the id prefix as in the official map: colour -> `hallucination_pair-*` (Hallucination),
  count -> `RLAIF-V-*` (Hallucination), shape -> `wildvision-battle-*` (General), position -> `mathverse_*`
  (Reasoning).
- Multimodal RewardBench `data/all_data.json` (`ID`, `Text`, `Image`, `Output1`, `Output2`, `Better`,
  `Category`); pairs cycle through the seven reported columns (correctness, preference, knowledge, math, coding,
  safety, vqa) so every column has rows.
- MM-RLHF-RewardBench `mm_reward_bench.jsonl` + media root: one query id per image with 2-3 pairs (the true answer
  against different wrong values, so Acc+ differs from Acc); categories by path: count -> mcq, shape -> long,
  colour -> short, position -> safety; and static `video/` frame folders of colour questions.

Only image pairs are written (every row of these benchmarks has an image). Labels are the synthetic truth.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from basereward.data.synthetic import COLOURS, MAX_COUNT, SHAPES
from basereward.types import PreferencePair

VLRB_PREFIX = {
    "colour": "hallucination_pair-",
    "count": "RLAIF-V-",
    "shape": "wildvision-battle-",
    "position": "mathverse_",
}
VLRB_FOLDER = {
    "colour": "povid",
    "count": "rlaif-v",
    "shape": "wildvision-battle",
    "position": "reasoning_tasks",
}
MMRB_COLUMNS = [
    ("open_generation/correctness_task", "nocaps"),
    ("open_generation/preference_task", "visitbench"),
    ("knowledge", "mmmu-pro"),
    ("reasoning", "mathvista"),
    ("reasoning", "EMMA-Coding"),
    ("safety", "PAIRS"),
    ("vqa", "RealworldQA"),
]
MMRLHF_CATEGORY = {"count": "mcq", "shape": "long", "colour": "short", "position": "safety"}
VALUES = {
    "colour": list(COLOURS),
    "shape": list(SHAPES),
    "count": [str(n) for n in range(1, MAX_COUNT + 1)],
    "position": ["left", "right"],
}


def _copy_image(pair: PreferencePair, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pair.images[0].path, dest)


def _question(pair: PreferencePair) -> str:
    return pair.prompt[-1]["content"].replace("<image>", "").strip()


def write_vl_rewardbench(pairs: list[PreferencePair], root: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, p in enumerate(pairs):
        kind = p.meta["kind"]
        rid = f"{VLRB_PREFIX[kind]}{i}"
        rel = f"images/{VLRB_FOLDER[kind]}/{rid}.png"
        _copy_image(p, root / rel)
        first_better = rng.random() < 0.5
        responses = [p.chosen, p.rejected] if first_better else [p.rejected, p.chosen]
        lines.append(
            {
                "id": rid,
                "image_path": rel,
                "query": _question(p),
                "response": responses,
                "human_ranking": [0, 1] if first_better else [1, 0],
                "models": ["synth", "synth"],
                "judge": "synthetic truth",
                "rationale": None,
                "query_source": "synth",
                "meta": {"kind": kind},
                "human_error_analysis": None,
            }
        )
    path = root / "data.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def write_multimodal_rewardbench(pairs: list[PreferencePair], root: Path, seed: int = 0) -> Path:
    rng = random.Random(seed + 1)
    data = root / "data"
    rows = []
    for i, p in enumerate(pairs):
        category, prefix = MMRB_COLUMNS[i % len(MMRB_COLUMNS)]
        rid = f"{prefix}_{i}"
        rel = f"images/{prefix.lower()}/{rid}.png"
        _copy_image(p, data / rel)
        first = rng.random() < 0.5
        rows.append(
            {
                "ID": rid,
                "Text": _question(p),
                "Image": rel,
                "Output1": p.chosen if first else p.rejected,
                "Output2": p.rejected if first else p.chosen,
                "Better": "Output1" if first else "Output2",
                "Category": category,
                "Meta": {"kind": p.meta["kind"]},
            }
        )
    data.mkdir(parents=True, exist_ok=True)
    path = data / "all_data.json"
    path.write_text(json.dumps(rows, indent=1))
    return path


def _wrong_answers(pair: PreferencePair, rng: random.Random, n: int) -> list[str]:
    """The rejected answer plus up to n-1 others: the chosen sentence with other wrong values of the same kind."""
    kind = pair.meta["kind"]
    words_c, words_r = pair.chosen.split(" "), pair.rejected.split(" ")
    diff = [i for i, (a, b) in enumerate(zip(words_c, words_r)) if a != b]
    out = [pair.rejected]
    if len(diff) == 1:
        i = diff[0]
        true = words_c[i].rstrip(".")
        others = [v for v in VALUES[kind] if v != true and v != words_r[i].rstrip(".")]
        for v in rng.sample(others, min(n - 1, len(others))):
            words = list(words_c)
            words[i] = v + ("." if words_c[i].endswith(".") else "")
            out.append(" ".join(words))
    return out


def write_mm_rlhf_rewardbench(
    pairs: list[PreferencePair], root: Path, seed: int = 0, video_every: int = 5
) -> Path:
    from PIL import Image

    rng = random.Random(seed + 2)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, p in enumerate(pairs):
        kind = p.meta["kind"]
        if kind == "colour" and i % video_every == 0:  # a static video: the same frame repeated
            rel = f"video/synth_{i}"
            (root / rel).mkdir(parents=True, exist_ok=True)
            frame = Image.open(p.images[0].path).convert("RGB")
            for t in range(4):
                frame.save(root / rel / f"frame_{t:04d}.jpg", quality=95)
            key = "video"
        else:
            rel = f"{MMRLHF_CATEGORY[kind]}/synth_{i}.png"
            _copy_image(p, root / rel)
            key = "image"
        for wrong in _wrong_answers(p, rng, n=rng.choice([2, 3])):
            lines.append(
                {
                    "id": f"synth_{i}",
                    key: rel,
                    "prompt": _question(p),
                    "chosen": p.chosen,
                    "rejected": wrong,
                    "chosen_reason": "",
                    "rejected_reason": "",
                }
            )
    path = root / "mm_reward_bench.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def write_all(pairs: list[PreferencePair], out: Path, seed: int = 0) -> dict[str, tuple[Path, Path]]:
    """{benchmark name: (data path, images root)} for the image pairs among `pairs`."""
    image_pairs = [p for p in pairs if p.images and p.meta.get("kind") in VLRB_PREFIX]
    vl = write_vl_rewardbench(image_pairs, out / "vl-rewardbench", seed)
    mm = write_multimodal_rewardbench(image_pairs, out / "multimodal-rewardbench", seed)
    rl = write_mm_rlhf_rewardbench(image_pairs, out / "mm-rlhf-rewardbench", seed)
    return {
        "vl-rewardbench": (vl, vl.parent),
        "multimodal-rewardbench": (mm, mm.parent),
        "mm-rlhf-rewardbench": (rl, rl.parent),
    }
