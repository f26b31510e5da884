"""Synthetic, image-grounded preference pairs (and text-only ones) for the demo, tests and learning checks.

`basereward data synth OUT [--pairs N] [--eval-pairs M] [--seed S]` writes

    OUT/train.jsonl  OUT/validation.jsonl  OUT/test.jsonl     unified pair records
    OUT/images/<split>/<id>.png                             112 x 112 rendered shapes (16 image tokens)

Image kinds (the answer can only be known by looking): `colour` (what colour is the shape), `shape` (which shape),
`count` (how many shapes), `position` (is the shape on the left or the right). The rejected answer is the
same sentence with a plausible wrong value, and each value is as often right as wrong across the set (the pair of
values is drawn first, then which one is true), so text alone cannot beat 50%.

Text kinds (text-only pairs; the held-out items of the validation and test splits never occur in training, so text
accuracy measures generalisation, not memory):
- `code` (the default): "The code is 4 0 7. What is the code?", chosen repeats the code, rejected has one digit
  replaced by a digit that is not in the code. Answering needs the prompt (chosen and rejected alike are random
  digit strings); 1,000 codes, 150 held out for validation and 150 for test.
- `addition`: "What is a + b?" for single digits, rejected = a sum off by 1 or 2; 15 of the 100 (a, b) held out
  for each of validation and test. A 2-layer demo model generalises it only sometimes (0.41-0.97 across seeds
  and builds), which is why the demo uses `code`.

Every pair carries a critique of each response (`chosen_critique` / `rejected_critique`, docs/datasets.md §1),
written from the truth the generator drew: what the image shows (or what the prompt's task asks) and whether the
response says it, e.g. "The image shows a red circle; the response says blue: wrong, it is red." They draw
nothing from the random stream, so every other field, and every image, is what it was before critiques existed.

Splits share no prompt+image: every image is a fresh random drawing and exact duplicates are redrawn.
Deterministic: the same seed writes byte-identical files.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from basereward.config import call_with_flags
from basereward.data.io import write_pairs
from basereward.types import ImageRef, PreferencePair

SIZE = 112
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 40, 180),
    "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "cross")
IMAGE_KINDS = ("colour", "shape", "count", "position")
TEXT_KINDS = ("code", "addition")
CODE_DIGITS = 3
MAX_COUNT = 4


def _draw(draw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.9
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.85), (cx + r, cy + r * 0.85)], fill=fill)
    elif shape == "cross":
        w = r * 0.38
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)


def _canvas(rng: random.Random):
    from PIL import Image, ImageDraw

    grey = rng.randint(235, 255)
    img = Image.new("RGB", (SIZE, SIZE), (grey, grey, grey))
    return img, ImageDraw.Draw(img)


def _two_values(rng: random.Random, values) -> tuple:
    """(true, wrong): an ordered pair of distinct values, uniform, so each value is equally often right or wrong."""
    a, b = rng.sample(list(values), 2)
    return a, b


def make_image_pair(kind: str, rng: random.Random):
    """Returns (PIL image, question, chosen, rejected) for one image kind."""
    img, q, chosen, rejected, _, _ = make_critiqued_image_pair(kind, rng)
    return img, q, chosen, rejected


def make_critiqued_image_pair(kind: str, rng: random.Random):
    """Returns (PIL image, question, chosen, rejected, chosen critique, rejected critique) for one image kind;
    the same draws from `rng` as make_image_pair."""
    img, q, tmpl, true, wrong, scene = _image_pair(kind, rng)
    return (
        img,
        q,
        tmpl.format(true),
        tmpl.format(wrong),
        *_critiques(f"The image shows {scene}", true, wrong),
    )


def _critiques(truth: str, true, wrong) -> tuple[str, str]:
    """(chosen critique, rejected critique): the truth, what each response says and whether that is it."""
    return (
        f"{truth}; the response says {true}: correct.",
        f"{truth}; the response says {wrong}: wrong, it is {true}.",
    )


def _plural(shape: str, n: int) -> str:
    return shape if n == 1 else shape + ("es" if shape.endswith("s") else "s")


def _image_pair(kind: str, rng: random.Random):
    """(image, question, answer template, true value, wrong value, what the image shows in words). The named
    intermediate values (a shape, a colour name) are drawn exactly where the drawing call drew them inline."""
    img, draw = _canvas(rng)
    if kind == "colour":
        true, wrong = _two_values(rng, COLOURS)
        r = rng.uniform(26, 34)
        cx, cy = rng.uniform(r + 4, SIZE - r - 4), rng.uniform(r + 4, SIZE - r - 4)
        shape = rng.choice(SHAPES)
        _draw(draw, shape, cx, cy, r, COLOURS[true])
        q, tmpl, scene = "What colour is the shape?", "The shape is {}.", f"a {true} {shape}"
    elif kind == "shape":
        true, wrong = _two_values(rng, SHAPES)
        r = rng.uniform(30, 38)
        cx, cy = rng.uniform(r + 4, SIZE - r - 4), rng.uniform(r + 4, SIZE - r - 4)
        colour = rng.choice(list(COLOURS))
        _draw(draw, true, cx, cy, r, COLOURS[colour])
        q, tmpl, scene = "What shape is shown?", "It is a {}.", f"a {colour} {true}"
    elif kind == "count":
        # Adjacent counts make the wrong answer plausible; the pair is drawn first so both are equally often true.
        lo = rng.randint(1, MAX_COUNT - 1)
        true, wrong = (lo, lo + 1) if rng.random() < 0.5 else (lo + 1, lo)
        cells = rng.sample([(x, y) for x in range(2) for y in range(2)], true)
        colour = rng.choice(list(COLOURS))
        shape = rng.choice(SHAPES)
        for x, y in cells:
            r = rng.uniform(15, 20)
            cx = x * SIZE / 2 + rng.uniform(r + 3, SIZE / 2 - r - 3)
            cy = y * SIZE / 2 + rng.uniform(r + 3, SIZE / 2 - r - 3)
            _draw(draw, shape, cx, cy, r, COLOURS[colour])
        q, tmpl, scene = (
            "How many shapes are there?",
            "There are {} shapes.",
            f"{true} {colour} {_plural(shape, true)}",
        )
    elif kind == "position":
        # One shape, left or right half. (A two-shape "is the red one left or right" variant stayed at chance for
        # the tiny demo model after 800 steps: binding colour to position is much harder than position alone.)
        true, wrong = _two_values(rng, ("left", "right"))
        r = rng.uniform(20, 26)
        x0 = 0 if true == "left" else SIZE / 2
        cx, cy = x0 + rng.uniform(r + 3, SIZE / 2 - r - 3), rng.uniform(r + 3, SIZE - r - 3)
        shape = rng.choice(SHAPES)  # drawn before the colour, as the inline arguments were
        colour = rng.choice(list(COLOURS))
        _draw(draw, shape, cx, cy, r, COLOURS[colour])
        q, tmpl = "Is the shape on the left or the right?", "The shape is on the {}."
        scene = f"a {colour} {shape} on the {true}"
    else:
        raise ValueError(f"unknown image kind {kind!r}")
    return img, q, tmpl, true, wrong, scene


def make_addition_pair(ab: tuple[int, int], rng: random.Random) -> tuple[str, str, str]:
    return _addition_pair(ab, rng)[:3]


def _addition_pair(ab: tuple[int, int], rng: random.Random) -> tuple[str, str, str, str, str]:
    """make_addition_pair's (question, chosen, rejected) and the two critiques."""
    a, b = ab
    s = a + b
    wrong = s + rng.choice([d for d in (-2, -1, 1, 2) if s + d >= 0])
    return (
        f"What is {a} + {b}?",
        f"{a} + {b} = {s}.",
        f"{a} + {b} = {wrong}.",
        *_critiques(f"{a} + {b} is {s}", s, wrong),
    )


def addition_splits(seed: int) -> dict[str, list[tuple[int, int]]]:
    """Disjoint (a, b) combinations: 70 for training, 15 validation, 15 test."""
    combos = [(a, b) for a in range(10) for b in range(10)]
    random.Random(seed * 7919 + 1).shuffle(combos)
    return {"train": combos[:70], "validation": combos[70:85], "test": combos[85:]}


def make_code_pair(code: tuple[int, ...], rng: random.Random) -> tuple[str, str, str]:
    return _code_pair(code, rng)[:3]


def _code_pair(code: tuple[int, ...], rng: random.Random) -> tuple[str, str, str, str, str]:
    """make_code_pair's (question, chosen, rejected) and the two critiques."""
    wrong = list(code)
    wrong[rng.randrange(len(code))] = rng.choice([d for d in range(10) if d not in code])
    c, w = " ".join(map(str, code)), " ".join(map(str, wrong))
    critiques = _critiques(f"The prompt gives the code {c}", c, w)
    return f"The code is {c}. What is the code?", f"The code is {c}.", f"The code is {w}.", *critiques


def code_splits(seed: int) -> dict[str, list[tuple[int, ...]]]:
    """Disjoint codes of CODE_DIGITS digits: 700 for training, 150 validation, 150 test."""
    codes = [tuple(int(x) for x in f"{i:0{CODE_DIGITS}d}") for i in range(10**CODE_DIGITS)]
    random.Random(seed * 7919 + 2).shuffle(codes)
    return {"train": codes[:700], "validation": codes[700:850], "test": codes[850:]}


# (items per split, maker of (question, chosen, rejected, chosen critique, rejected critique))
TEXT_MAKERS = {"code": (code_splits, _code_pair), "addition": (addition_splits, _addition_pair)}


def synth_split(
    out: Path,
    split: str,
    n: int,
    seed: int,
    text_share: float,
    seen: set[str],
    kinds=IMAGE_KINDS,
    text_kind: str = "code",
) -> list[PreferencePair]:
    rng = random.Random(f"{seed}/{split}")
    img_dir = out / "images" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    splits, make_text = TEXT_MAKERS[text_kind]
    combos = splits(seed)[split]
    n_text = round(n * text_share)
    plan = [text_kind] * n_text + [kinds[i % len(kinds)] for i in range(n - n_text)]
    rng.shuffle(plan)
    pairs = []
    for i, kind in enumerate(plan):
        pid = f"synth-{split}-{i:06d}"
        if kind == text_kind:
            q, c, r, cc, rc = make_text(rng.choice(combos), rng)
            pairs.append(
                PreferencePair(
                    id=pid,
                    prompt=[{"role": "user", "content": q}],
                    chosen=c,
                    rejected=r,
                    chosen_critique=cc,
                    rejected_critique=rc,
                    source=f"synth/{kind}",
                    meta={"kind": kind},
                )
            )
            continue
        while True:  # redraw the (rare) exact duplicate so no prompt+image repeats within or across splits
            img, q, c, r, cc, rc = make_critiqued_image_pair(kind, rng)
            key = hashlib.sha1(q.encode() + img.tobytes()).hexdigest()
            if key not in seen:
                seen.add(key)
                break
        path = img_dir / f"{pid}.png"
        img.save(path, format="PNG", optimize=False)
        pairs.append(
            PreferencePair(
                id=pid,
                prompt=[{"role": "user", "content": f"<image>\n{q}"}],
                chosen=c,
                rejected=r,
                images=[ImageRef(path=str(path))],
                chosen_critique=cc,
                rejected_critique=rc,
                source=f"synth/{kind}",
                meta={"kind": kind},
            )
        )
    write_pairs(out / f"{split}.jsonl", pairs)
    return pairs


def synthesize(
    out_dir: str | Path,
    *,
    pairs: int = 2000,
    eval_pairs: int = 400,
    seed: int = 0,
    text_share: float = 0.2,
    kinds=IMAGE_KINDS,
    text_kind: str = "code",
) -> dict:
    """Write train (`pairs`), validation and test (`eval_pairs` each). Returns counts per split and kind."""
    out = Path(out_dir)
    seen: set[str] = set()
    counts = {}
    for split, n in (("train", pairs), ("validation", eval_pairs), ("test", eval_pairs)):
        made = synth_split(out, split, n, seed, text_share, seen, tuple(kinds), text_kind)
        counts[split] = {}
        for p in made:
            counts[split][p.meta["kind"]] = counts[split].get(p.meta["kind"], 0) + 1
    return counts


def add_args(p) -> None:
    p.add_argument("out", help="output folder")
    p.add_argument("--pairs", type=int, default=2000, help="training pairs")
    p.add_argument("--eval-pairs", type=int, default=400, help="pairs in each of validation and test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text-share", type=float, default=0.2, help="share of text-only pairs")
    p.add_argument("--text-kind", default="code", choices=TEXT_KINDS, help="the text-only task")
    p.add_argument("--kinds", default=",".join(IMAGE_KINDS), help="image kinds, comma-separated")


def run(args) -> dict:
    kinds = tuple(k for k in args.kinds.split(",") if k)
    counts = call_with_flags(synthesize, args, out_dir=args.out, kinds=kinds)
    out = Path(args.out)
    return {"out": str(out), "splits": {s: str(out / f"{s}.jsonl") for s in counts}, "counts": counts}


def blank_copy(pair: PreferencePair) -> PreferencePair:
    """The same pair with every image replaced by a blank (mid-grey) image of the same size: the control that shows
    whether a model reads the image (accuracy near 0.5 if it does; the demo and `bench paradigms` report it)."""
    import dataclasses
    import io

    from PIL import Image

    blanks = []
    for ref in pair.images:
        buf = io.BytesIO()
        Image.new("RGB", ref.load().size, (128, 128, 128)).save(buf, format="PNG")
        blanks.append(ImageRef(data=buf.getvalue(), where=ref.where))
    return dataclasses.replace(pair, images=blanks)
