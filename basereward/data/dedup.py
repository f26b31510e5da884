"""Duplicate detection primitives shared by the mixture (exact pair dedup), the split (prompt groups) and
decontamination (near-duplicate prompts, perceptual image hashes).

- Text is normalised (NFKC, case-folded, tags and model tokens removed, whitespace collapsed) and hashed to 64
  bits; near duplicates are found by word n-gram containment.
- Images are identified exactly by a content hash (SHA-1 of the encoded bytes) and approximately by a 64-bit
  perceptual hash (`phash`: DCT of a 32x32 grey thumbnail; `dhash`: 9x8 gradient signs), compared by Hamming
  distance, so a resized, re-encoded copy of a benchmark image is still recognised.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import unicodedata
from functools import lru_cache

import numpy as np

from basereward.data.sources.text import strip_tags
from basereward.types import DataError, ImageRef

_WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """The text identity used everywhere: case, width, whitespace and `<image>` tags do not count."""
    text = unicodedata.normalize("NFKC", strip_tags(text)).casefold()
    return " ".join(text.split())


def prompt_text(prompt: list[dict], roles: tuple[str, ...] = ("system", "user", "assistant")) -> str:
    """The normalised text of a prompt's turns (roles kept, so a system prompt changes the identity)."""
    return "\n".join(f"{m['role']}: {normalise(m['content'])}" for m in prompt if m["role"] in roles)


def question_text(prompt: list[dict]) -> str:
    """The normalised user turns only: what a benchmark question looks like inside a training prompt."""
    return " ".join(normalise(m["content"]) for m in prompt if m["role"] == "user")


def digest64(*parts: str | bytes) -> int:
    """A stable 64-bit hash of several fields (unlike `hash()`, the same in every process)."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(p.encode("utf-8") if isinstance(p, str) else p)
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "little")


def image_digest(image: dict | ImageRef, base_dir: str | os.PathLike | None = None) -> bytes:
    """SHA-1 of an image's encoded bytes (a shard cell {bytes, path} or an ImageRef)."""
    if isinstance(image, ImageRef):
        data = image.data if image.data is not None else _read(image.path, image.where)
    elif image.get("bytes") is not None:
        data = image["bytes"]
    else:
        data = _read(os.path.join(base_dir or "", image["path"]), "")
    return hashlib.sha1(data).digest()


def _read(path: str, where: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise DataError(f"{where + ': ' if where else ''}cannot read image {path}: {e}") from e


def pair_key(prompt: list[dict], images: list[bytes], chosen: str, rejected: str) -> int:
    """Exact pair identity (docs/datasets.md §5, item 7): normalised prompt, image content hashes, both responses."""
    return digest64(prompt_text(prompt), *images, b"|", normalise(chosen), normalise(rejected))


def prompt_key(prompt: list[dict], images: list[bytes]) -> int:
    """Prompt identity (text + images): pairs sharing it stay on one side of a split."""
    return digest64(prompt_text(prompt), *images)


def ngrams(text: str, n: int) -> set[int]:
    """Word n-gram hashes of normalised text (fewer than n words: the whole text as one gram)."""
    words = _WORD.findall(text)
    if len(words) < n:
        return {digest64(" ".join(words))} if words else set()
    return {digest64(" ".join(words[i : i + n])) for i in range(len(words) - n + 1)}


# ---- perceptual hashes -------------------------------------------------------------------------------------


def open_grey(image: ImageRef, size: int = 64):
    """Decode to greyscale cheaply: JPEG `draft` decodes at 1/2..1/8 scale, which is all a 32x32 hash
    needs."""
    from PIL import Image

    try:
        im = Image.open(image.path if image.path is not None else io.BytesIO(image.data))
        im.draft("L", (size, size))
        return im.convert("L")
    except Exception as e:  # PIL raises many types for bad files
        raise DataError(f"{image.where}: unreadable image: {image.describe()}: {e}") from e


@lru_cache(maxsize=4)
def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)
    m = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


def phash(grey) -> int:
    """DCT hash: the 8x8 lowest frequencies of a 32x32 thumbnail, thresholded at their median (DC
    excluded)."""
    from PIL import Image

    a = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    d = _dct_matrix(32)
    low = (d @ a @ d.T)[:8, :8].ravel()
    return _bits(low > np.median(low[1:]))


def dhash(grey) -> int:
    """Difference hash: sign of the horizontal gradient on a 9x8 thumbnail."""
    from PIL import Image

    a = np.asarray(grey.resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    return _bits((a[:, 1:] > a[:, :-1]).ravel())


def _bits(flags: np.ndarray) -> int:
    return int.from_bytes(np.packbits(flags.astype(np.uint8)).tobytes(), "big")


def hamming(h: int, others: np.ndarray) -> np.ndarray:
    """Bit distance from one 64-bit hash to an array of them (uint64)."""
    x = np.bitwise_xor(others.astype(np.uint64), np.uint64(h))
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
