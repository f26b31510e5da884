"""`basereward data decontam`: find training pairs whose prompt + image appears in a benchmark; report them
per benchmark, or write the training set without them.

    basereward data decontam --train data/mixtures/basereward-final \
        --against vl-rewardbench:data/bench/vl_rewardbench --against mm-rlhf-rewardbench:data/bench/mm_rlhf \
        --out data/mixtures/basereward-final-clean

A training pair matches a benchmark item when
- text: its normalised user text equals the item's, or contains at least `threshold` of the item's word
  n-grams (so a copy with other case, spacing or a wrapper instruction is caught), and
- image: when the item has images, one training image has the same content hash or a perceptual hash (pHash)
  within `max_distance` bits (a resized, re-encoded copy); when the item's images cannot be read (benchmark
  media not downloaded), text alone decides, but only for questions of at least `min_words` words, because
  short generic prompts ("Describe this image in detail.") recur over unrelated images.
Images are hashed only for rows whose text matched, which keeps a 2.8M-pair scan cheap. Benchmarks are loaded
with `basereward.data.benchmarks.load_benchmark` (names as `basereward eval --benchmark` takes them).
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from basereward.data.benchmarks import load_benchmark
from basereward.data.dedup import digest64, hamming, image_digest, ngrams, open_grey, phash, question_text
from basereward.data.shard_reader import ShardDir
from basereward.data.shards import ShardWriter, rebase_paths
from basereward.types import DataError, ImageRef, PreferencePair


@dataclass(frozen=True)
class Settings:
    ngram: int = 5  # words per n-gram
    threshold: float = 0.8  # share of the benchmark question's n-grams found in the training prompt
    max_distance: int = 8  # pHash bits; resized/re-encoded copies measure 0-4, unrelated images 14+
    min_words: int = 8  # text-only decision (benchmark image unavailable) needs a question this long


@dataclass
class _Item:
    bench: str
    id: str
    text: str
    n_grams: int
    sha1: set
    phashes: np.ndarray  # uint64
    has_images: bool
    images_ok: bool


class BenchIndex:
    """Benchmark questions indexed by exact text hash and by n-gram, with their images' hashes."""

    def __init__(self, settings: Settings):
        self.s = settings
        self.items: list[_Item] = []
        self.exact: dict[int, list[int]] = defaultdict(list)
        self.grams: dict[int, list[int]] = defaultdict(list)

    def add(self, bench: str, pair: PreferencePair) -> None:
        text = question_text(pair.prompt)
        sha1, hashes, ok = set(), [], True
        for img in pair.images:
            try:
                sha1.add(image_digest(img))
                hashes.append(phash(open_grey(img)))
            except DataError:
                ok = False  # benchmark media not available: text decides (see module doc)
        grams = ngrams(text, self.s.ngram)
        item = _Item(
            bench, pair.id, text, len(grams), sha1, np.array(hashes, np.uint64), bool(pair.images), ok
        )
        k = len(self.items)
        self.items.append(item)
        self.exact[digest64(text)].append(k)
        for g in grams:
            self.grams[g].append(k)

    def text_matches(self, text: str) -> dict[int, tuple[str, float]]:
        """item -> (rule, score) for items whose question this training text equals or contains."""
        found = {k: ("exact_text", 1.0) for k in self.exact.get(digest64(text), ())}
        counts: Counter = Counter()
        for g in ngrams(text, self.s.ngram):
            counts.update(self.grams.get(g, ()))
        for k, c in counts.items():
            score = c / self.items[k].n_grams
            if k not in found and score >= self.s.threshold:
                found[k] = ("near_text", round(score, 3))
        return found

    def image_match(self, k: int, train_images: list[tuple[bytes, int]]) -> tuple[str, int] | None:
        item = self.items[k]
        for sha1, ph in train_images:
            if sha1 in item.sha1:
                return "image_exact", 0
            if len(item.phashes):
                d = int(hamming(ph, item.phashes).min())
                if d <= self.s.max_distance:
                    return "image_near", d
        return None


def load_benchmarks(specs: list[str]) -> list[tuple[str, list[PreferencePair]]]:
    """`NAME:PATH[:IMAGES]` -> pairs, via the benchmark loaders (the same ones `basereward eval` uses)."""
    out = []
    for spec in specs:
        name, _, rest = spec.partition(":")
        path, _, images = rest.partition(":")
        if not name or not path:
            raise DataError(f"--against {spec!r}: expected BENCH:PATH[:IMAGES_DIR]")
        out.append((name, load_benchmark(name, path, images=images or None)))
    return out


def decontaminate(
    train: str | Path,
    against: list[tuple[str, list[PreferencePair]]],
    *,
    out: str | Path | None = None,
    settings: Settings = Settings(),
    overwrite: bool = False,
) -> dict:
    """Scan `train` (a shard folder); with `out`, write it without the matched pairs. Returns the report."""
    sd = ShardDir(train)
    index = BenchIndex(settings)
    for name, pairs in against:
        for p in pairs:
            index.add(name, p)
    matches, removed = [], np.zeros(sd.num_rows, bool)
    start = 0
    for batch in sd.iter_batches():
        ids, sources, prompts = (batch.column(c).to_pylist() for c in ("id", "source", "prompt"))
        for j, prompt in enumerate(prompts):
            found = _match_row(index, question_text(prompt), batch, j, sd, start + j, settings)
            for k, text_rule, score, image_rule, dist in found:
                item = index.items[k]
                matches.append(
                    {
                        "train_id": ids[j],
                        "source": sources[j],
                        "benchmark": item.bench,
                        "benchmark_id": item.id,
                        "text": text_rule,
                        "text_score": score,
                        "image": image_rule,
                        "image_distance": dist,
                    }
                )
            removed[start + j] = bool(found)
        start += batch.num_rows
    report = _report(sd, index, matches, removed, settings)
    if out is not None:
        out = Path(out)
        with ShardWriter(out, fmt=sd.fmt, overwrite=overwrite, images_dir=out / "images") as w:
            start = 0
            for batch in sd.iter_batches():
                keep = ~removed[start : start + batch.num_rows]
                start += batch.num_rows
                if keep.any():
                    w.write_batch(rebase_paths(batch.filter(pa.array(keep)), sd.path, out))
            w.close({"decontam": {k: v for k, v in report.items() if k != "examples"}})
        with (out / "decontam_matches.jsonl").open("w") as f:
            for m in matches:
                f.write(json.dumps(m) + "\n")
        report.update(
            out=str(out), removed=int(removed.sum()), matches_file=str(out / "decontam_matches.jsonl")
        )
    return report


def _match_row(index: BenchIndex, text: str, batch, j: int, sd: ShardDir, row: int, s: Settings) -> list:
    found = index.text_matches(text)
    if not found:
        return []
    train_images = None
    hits = []
    for k, (text_rule, score) in found.items():
        item = index.items[k]
        if not item.has_images:
            hits.append((k, text_rule, score, None, None))
            continue
        if not item.images_ok:
            if len(item.text.split()) >= s.min_words:
                hits.append((k, text_rule, score, "benchmark image unavailable", None))
            continue
        if train_images is None:  # hash this row's images once, and only now that its text matched
            cells = batch.column("images")[j].as_py() or []
            where = [f"{sd.where(row)} images[{i}]" for i in range(len(cells))]
            refs = [
                ImageRef(data=c["bytes"], where=w)
                if c.get("bytes") is not None
                else ImageRef(path=str(sd.path / c["path"]), where=w)
                for c, w in zip(cells, where)
            ]
            train_images = [(image_digest(r), phash(open_grey(r))) for r in refs]
        im = index.image_match(k, train_images)
        if im is not None:
            hits.append((k, text_rule, score, *im))
    return hits


def _report(sd: ShardDir, index: BenchIndex, matches: list[dict], removed: np.ndarray, s: Settings) -> dict:
    per = {}
    for bench in dict.fromkeys(i.bench for i in index.items):
        items = [i for i in index.items if i.bench == bench]
        ms = [m for m in matches if m["benchmark"] == bench]
        per[bench] = {
            "items": len(items),
            "items_with_images": sum(i.has_images for i in items),
            "items_image_unavailable": sum(i.has_images and not i.images_ok for i in items),
            "items_matched": len({m["benchmark_id"] for m in ms}),
            "train_pairs_matched": len({m["train_id"] for m in ms}),
            "by_rule": dict(Counter(f"{m['text']}+{m['image'] or 'text-only item'}" for m in ms)),
            "by_source": dict(Counter(m["source"] for m in {m["train_id"]: m for m in ms}.values())),
        }
    return {
        "train": str(sd.path),
        "train_rows": sd.num_rows,
        "settings": asdict(s),
        "benchmarks": per,
        "train_pairs_matched": int(removed.sum()),
        "examples": matches[:20],
    }


def add_args(parser) -> None:
    parser.add_argument("--train", required=True, type=Path, help="training pair shard folder")
    parser.add_argument(
        "--against",
        required=True,
        action="append",
        metavar="BENCH:PATH[:IMAGES]",
        help="a benchmark (vl-rewardbench, multimodal-rewardbench, mm-rlhf-rewardbench, pairs); repeat",
    )
    parser.add_argument(
        "--out", type=Path, help="write the training set without matched pairs here (else: report only)"
    )
    parser.add_argument("--ngram", type=int, default=Settings.ngram)
    parser.add_argument("--threshold", type=float, default=Settings.threshold)
    parser.add_argument("--max-distance", type=int, default=Settings.max_distance)
    parser.add_argument("--min-words", type=int, default=Settings.min_words)
    parser.add_argument("--overwrite", action="store_true")


def run(args) -> dict:
    settings = Settings(args.ngram, args.threshold, args.max_distance, args.min_words)
    report = decontaminate(
        args.train, load_benchmarks(args.against), out=args.out, settings=settings, overwrite=args.overwrite
    )
    for bench, r in report["benchmarks"].items():
        print(
            f"{bench}: {r['train_pairs_matched']} training pairs match "
            f"{r['items_matched']}/{r['items']} items",
            file=sys.stderr,
        )
    return report
