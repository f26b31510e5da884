"""The records passed between pipeline stages: image/video references, preference pairs, scoring samples.

Every stage speaks these types: converters and benchmark loaders produce `PreferencePair`s, the collator turns
`Sample`s into tensors, the scoring path returns one reward per response. Nothing here imports torch.

Prompt convention (the unified pair record of docs/datasets.md): `prompt` is a list of `{"role", "content"}`
messages whose `content` is a string; the user text holds exactly one literal `<image>` tag per entry of `images`
(in order) and one `<video>` tag per entry of `videos`. Responses hold no tags.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_TAG = "<image>"
VIDEO_TAG = "<video>"


# Refused by ImageRef.verify and by the template's decode (basereward/template.py): reward-model processors
# resize to a few megapixels, so anything this large is an error or a decompression bomb. PIL itself only
# warns up to 179 MP.
MAX_IMAGE_PIXELS = 64_000_000
# Qwen-VL's image and video processors (smart_resize) raise a ValueError past this ratio of the long side to the
# short one; `ImageRef.verify` refuses such an image from its header, as bad input naming where it is.
MAX_ASPECT_RATIO = 200


class DataError(ValueError):
    """Bad input. The message always names where it is: `file:line`, a record id, or a request field."""


@dataclass(frozen=True)
class ImageRef:
    """One image, either a file on disk or encoded bytes (PNG/JPEG/...). Loaded lazily with `load()`."""

    path: str | None = None
    data: bytes | None = None
    where: str = ""  # e.g. "train.jsonl:12" or "request.messages[0].content[1]", used in error messages

    def load(self, max_pixels: int | None = None):
        """Decode to an RGB PIL image. Raises DataError naming `where` and the path on any failure."""
        return self._decode(max_pixels, "RGB")

    def verify(self, max_pixels: int = MAX_IMAGE_PIXELS, *, decode: bool = True) -> None:
        """The one integrity check of an image before it is used: the file exists and is readable, it decodes
        completely (a truncated or corrupt file fails here, not mid-run), its header size is at most
        `max_pixels` (a decompression bomb is refused before its pixels are allocated) and its aspect ratio at
        most MAX_ASPECT_RATIO (the vision processor's own limit). Raises DataError
        starting with `where`. `decode=False` stops after the header: for a hot path (the server's request
        parsing) whose next step decodes the image anyway."""
        self._decode(max_pixels, None, full=decode)

    def _decode(self, max_pixels: int | None, mode: str | None, full: bool = True):
        from PIL import Image, UnidentifiedImageError

        label = f"{self.where}: " if self.where else ""
        if self.path is None and self.data is None:
            raise DataError(f"{label}image has neither a path nor bytes")
        if self.path is not None and not Path(self.path).is_file():
            raise DataError(f"{label}image file not found: {self.path}")
        try:
            src = self.path if self.path is not None else io.BytesIO(self.data)
            with Image.open(src) as im:
                w, h = im.size
                if max_pixels is not None and w * h > max_pixels:
                    raise DataError(
                        f"{label}image too large: {w}x{h} = {w * h} pixels, over the limit of {max_pixels}"
                    )
                if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
                    raise DataError(
                        f"{label}image too elongated: {w}x{h}, the long side may be at most {MAX_ASPECT_RATIO} "
                        "times the short one"
                    )
                if not full:
                    return None
                im.load()  # the full decode: truncated data and broken streams fail here
                return im.convert(mode) if mode else None
        except DataError:
            raise
        except Image.DecompressionBombError as e:  # PIL's own limit, above ours unless max_pixels is None
            raise DataError(f"{label}image too large to decode: {self._what()}: {e}") from e
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DataError(f"{label}corrupt or unreadable image: {self._what()}: {e}") from e

    def _what(self) -> str:
        return self.path if self.path is not None else f"{len(self.data)} embedded bytes"

    def describe(self) -> str:
        return self.path if self.path is not None else f"<{len(self.data or b'')} bytes>"


@dataclass(frozen=True)
class VideoRef:
    """A video given as a folder of frame images (the MM-RLHF-RewardBench layout) or as explicit frames."""

    frames_dir: str | None = None
    frames: tuple[ImageRef, ...] = ()
    where: str = ""


@dataclass
class Sample:
    """One prompt (+ images/videos) and K >= 1 responses to score. A pair is a Sample with K = 2."""

    prompt: list[dict[str, Any]]
    responses: list[str]
    images: list[ImageRef] = field(default_factory=list)
    videos: list[VideoRef] = field(default_factory=list)
    id: str = ""

    def prompt_key(self) -> str | None:
        """Equal keys mean equal prompt and images (bytes, or path with size and mtime), hence an identical prompt
        encoding: the one key for the server's prompt cache and for merging samples that share a prompt. None
        for samples with videos (never cached or merged)."""
        if self.videos:
            return None
        h = hashlib.blake2b(json.dumps(self.prompt, sort_keys=True).encode(), digest_size=16)
        for ref in self.images:
            if ref.data is not None:
                h.update(ref.data)
            else:
                st = os.stat(ref.path) if ref.path and os.path.exists(ref.path) else None
                h.update(f"{ref.path}|{st and st.st_size}|{st and st.st_mtime_ns}".encode())
            h.update(b"\x00")
        return h.hexdigest()


@dataclass
class PreferencePair:
    """The unified pair record (docs/datasets.md §1)."""

    id: str
    prompt: list[dict[str, Any]]
    chosen: str
    rejected: str
    images: list[ImageRef] = field(default_factory=list)
    videos: list[VideoRef] = field(default_factory=list)
    source: str = ""
    score_chosen: float | None = None
    score_rejected: float | None = None
    margin: float | None = None
    # What each response gets right or wrong, in words (docs/datasets.md §1): what a critic-based RM trains on;
    # the naive (Bradley-Terry) paradigm ignores them. None when the source has none.
    chosen_critique: str | None = None
    rejected_critique: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # "file:line" this record came from, for error messages

    def as_sample(self) -> Sample:
        """Responses in the order [chosen, rejected]."""
        return Sample(self.prompt, [self.chosen, self.rejected], self.images, self.videos, self.id)

    @property
    def has_media(self) -> bool:
        return bool(self.images or self.videos)
