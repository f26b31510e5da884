"""`basereward data convert`: one public dataset's download -> unified pair records (shard folder or JSONL).

    basereward data convert --source rlaif-v --input data/raw/openbmb/RLAIF-V-Dataset --out data/pairs/rlaif-v

The converter (basereward/data/sources) turns raw rows into pairs; this driver validates every pair
(placeholder count, responses, images decodable), applies the error policy and writes shards. Bad input fails
with a message naming source, file and row; with `--on-error skip` the row is skipped and counted by reason, and
every good row before and after it is written. Rows a source's own rules leave out (ties, video, ...) are
counted as `dropped`, never errors. A pair whose chosen equals its rejected is never written: bad input in an
import format (a file users write), a `dropped` "chosen == rejected" in a public source (a known quirk there).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from basereward.config import call_with_flags
from basereward.data.io import LoadStats, check_responses
from basereward.data.shards import FORMATS, ShardWriter
from basereward.data.sources import IMPORT_FORMATS, SOURCES, converter
from basereward.data.sources.text import Drop
from basereward.types import IMAGE_TAG, DataError, PreferencePair


@dataclass
class ConvertStats(LoadStats):
    """LoadStats (`lines` = raw rows read, `kept` = rows that gave pairs, `skipped` = bad rows by reason) plus
    rows dropped by the source's rules and the pairs written."""

    dropped: dict[str, int] = field(default_factory=dict)
    pairs: int = 0

    def report(self) -> dict:
        return {
            "rows_read": self.lines,
            "rows_converted": self.kept,
            "pairs": self.pairs,
            "dropped": dict(sorted(self.dropped.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "skip_examples": self.examples[:5],
        }


def add_args(parser) -> None:
    parser.add_argument(
        "--source", required=True, choices=list(SOURCES), help="which public dataset (or import format)"
    )
    parser.add_argument(
        "--input", required=True, type=Path, help="the download: file, folder, or save_to_disk folder"
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--images", type=Path, help="image root (folder, zip, split zip, tar) if not the default"
    )
    parser.add_argument(
        "--format", default="parquet", choices=FORMATS, help="parquet shards (default), arrow, jsonl"
    )
    parser.add_argument(
        "--image-mode", default="bytes", choices=("bytes", "path"), help="embed images or store files"
    )
    parser.add_argument(
        "--on-error", default="fail", choices=("fail", "skip"), help="bad rows: stop, or skip and count"
    )
    parser.add_argument("--split", help="split/subset to read (HF split files, SHP split, MMPR subset)")
    parser.add_argument(
        "--revision", help="the Hub commit you downloaded; recorded in every pair's meta.revision"
    )
    parser.add_argument("--limit", type=int, help="stop after this many pairs (smoke tests)")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")


def run(args) -> dict:
    return call_with_flags(convert, args, inp=args.input, fmt=args.format)


def convert(
    source: str,
    inp: str | Path,
    out: str | Path,
    *,
    images: str | Path | None = None,
    fmt: str = "parquet",
    image_mode: str = "bytes",
    on_error: str = "fail",
    split: str | None = None,
    revision: str | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    images_dir: Path | None = None,
) -> dict:
    """Convert and write; returns the report (also stored in the folder's manifest under "convert")."""
    t0 = time.perf_counter()
    stats = ConvertStats()
    with ShardWriter(
        out, fmt=fmt, image_mode=image_mode, images_dir=images_dir, overwrite=overwrite
    ) as writer:
        pairs = iter_pairs(
            source, Path(inp), images=images, on_error=on_error, split=split, revision=revision, stats=stats
        )
        for pair in pairs:
            writer.write(pair)
            if limit is not None and stats.pairs >= limit:
                break
        report = {"source": source, "input": str(inp), "revision": revision, **stats.report()}
        manifest = writer.close({"convert": report})
    report.update(out=str(out), format=fmt, sources=manifest["sources"], image_rows=manifest["image_rows"])
    report["seconds"] = round(time.perf_counter() - t0, 3)
    print(
        f"{source}: {stats.lines} rows -> {stats.pairs} pairs; dropped {sum(stats.dropped.values())}, "
        f"skipped {stats.n_skipped} -> {out}",
        file=sys.stderr,
    )
    return report


def iter_pairs(
    source: str,
    inp: Path,
    *,
    images: str | Path | None = None,
    on_error: str = "fail",
    split: str | None = None,
    revision: str | None = None,
    stats: ConvertStats | None = None,
) -> Iterator[PreferencePair]:
    """The validated pairs of a source, applying the error policy; `stats` counts everything."""
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    stats = stats if stats is not None else ConvertStats()
    for where, result in converter(source)(Path(inp), Path(images) if images else None, split):
        stats.lines += 1
        if isinstance(result, Drop):
            stats.dropped[result.reason] = stats.dropped.get(result.reason, 0) + 1
            continue
        strict = source in IMPORT_FORMATS
        try:
            if isinstance(result, Exception):
                raise result
            for pair in result:
                check_pair(pair, where)
            distinct = [p for p in result if p.chosen.strip() != p.rejected.strip()]
            if strict and len(distinct) < len(result):
                raise DataError(f"{where}: chosen == rejected: no preference to learn or measure")
        except DataError as e:
            # every message names the source
            err = e if str(e).startswith("[") else DataError(f"[{source}] {e}")
            if on_error == "fail":
                raise err from None
            stats.skip(err)
            continue
        if len(distinct) < len(result):
            stats.dropped["chosen == rejected"] = stats.dropped.get("chosen == rejected", 0) + (
                len(result) - len(distinct)
            )
        if result and not distinct:  # every pair of the row was identical: the row gave none
            continue
        stats.kept += 1
        for pair in distinct:
            if revision:
                pair.meta["revision"] = revision
            stats.pairs += 1
            yield pair


def check_pair(pair: PreferencePair, where: str) -> None:
    """The unified record's rules (docs/datasets.md §1), and every image decodable, before writing."""
    if not pair.prompt or pair.prompt[-1]["role"] != "user":
        raise DataError(f"{where}: the prompt must end with a user turn")
    for key, text in (("chosen", pair.chosen), ("rejected", pair.rejected)):
        if not isinstance(text, str):
            raise DataError(f"{where}: field '{key}' must be a string, got {type(text).__name__}")
    for key in ("chosen_critique", "rejected_critique"):  # optional; the shard column is a nullable string
        if not isinstance(getattr(pair, key), str | None):
            raise DataError(
                f"{where}: field '{key}' must be a string or null, got {type(getattr(pair, key)).__name__}"
            )
    # chosen == rejected is the caller's to judge: a dropped quirk in a public source, bad input in an import
    check_responses(pair.chosen, pair.rejected, where, distinct=False)
    tags = sum(m["content"].count(IMAGE_TAG) for m in pair.prompt)
    if tags != len(pair.images):
        raise DataError(f"{where}: image placeholder count mismatch: {tags} tags, {len(pair.images)} images")
    for img in pair.images:  # a converter's refs carry their row's location; one that does not gets it here
        (img if img.where else replace(img, where=where)).verify()
