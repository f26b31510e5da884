"""Helpers for the data tests: images, files in each public layout, and running a `basereward` verb.
Not a test module; every fixture is written by the test that uses it."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw


def picture(seed: int, size: int = 96) -> Image.Image:
    """A structured image (ellipses on a background): distinct seeds give perceptually distinct images."""
    r = np.random.default_rng(seed)
    im = Image.new("RGB", (size, size), tuple(int(x) for x in r.integers(0, 255, 3)))
    d = ImageDraw.Draw(im)
    for _ in range(10):
        x, y = r.integers(0, size, 2)
        w, h = r.integers(size // 8, size // 2, 2)
        d.ellipse([int(x), int(y), int(x + w), int(y + h)], fill=tuple(int(v) for v in r.integers(0, 255, 3)))
    return im


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png(seed: int = 0, size: int = 32) -> bytes:
    return encode(picture(seed, size))


def jpeg(seed: int = 0, size: int = 32) -> bytes:
    return encode(picture(seed, size), "JPEG", quality=90)


def write_parquet(path: Path, rows: list[dict], schema: pa.Schema | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def write_json(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    return path


def cli(*argv) -> tuple[int, dict | None, str]:
    """Run `basereward ARGV` in-process: (exit code, the final JSON line or None, stderr)."""
    from basereward.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    lines = out.getvalue().strip().splitlines()
    return rc, (json.loads(lines[-1]) if lines else None), err.getvalue()


def convert(source: str, inp: Path, out: Path, *extra) -> tuple[dict, list]:
    """Convert with the CLI verb and read the pairs back through the trainer's entry point."""
    from basereward.data.store import open_pairs

    rc, report, err = cli("data", "convert", "--source", source, "--input", inp, "--out", out, *extra)
    assert rc == 0, err
    return report, list(open_pairs(out))
