"""Where request images may come from, and the limits on them: one function, `image_ref(source, field, policy)`.

Accepted sources, in the order they are recognised:
- `data:image/...;base64,<payload>` data URIs (the OpenAI / vLLM form);
- `http(s)://` URLs, only under a prefix the operator allow-listed (`--allow-url-prefix`), fetched with a size cap
  and no redirects; with no allow-list every remote URL is refused, so the server never fetches on a client's word;
- `file://` or plain paths, only when the operator set `--image-root`; the path may not contain `..` and must
  resolve (symlinks followed) inside the root;
- bare base64 (a long string in the base64 alphabet whose bytes start like an image file).

Every refusal is a `RequestError` naming the request field. Each image's header is read where the request names it
(`check_pixels`: readable, within the pixel limit and the aspect ratio the vision processor takes); the full decode
happens later, in the one preprocessing path, whose errors name the same field through `ImageRef.where`.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from basereward.types import DataError, ImageRef

_DATA_URI = re.compile(r"data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<payload>.*)", re.DOTALL)
_B64 = re.compile(r"[A-Za-z0-9+/=_\-\s]+")
# Leading bytes of the formats PIL reads that clients send; used only to tell bare base64 from a path.
_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*")


class RequestError(DataError):
    """A bad request, with the dotted path of the offending field (`samples[0].images[1]`)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.detail = message
        super().__init__(message if message.startswith(field) else f"{field}: {message}")


@dataclass(frozen=True)
class MediaPolicy:
    """What the server accepts as media. Defaults are the safe ones: data URIs only."""

    image_root: Path | None = None  # local paths allowed under this folder; None: no local paths
    allow_url_prefixes: tuple[str, ...] = ()  # remote URLs allowed under these prefixes; empty: none
    max_images: int = 16  # images (and video frames) per sample
    max_image_pixels: int = 16_777_216  # source width x height, checked before decoding (decompression bombs)
    max_image_bytes: int = 32 * 1024 * 1024  # encoded size of one image
    fetch_timeout_s: float = 10.0


def image_ref(source, field: str, policy: MediaPolicy) -> ImageRef:
    """One image source string -> an `ImageRef` whose errors will name `field`; its header already checked."""
    return check_pixels(_resolve(source, field, policy), policy)


def _resolve(source, field: str, policy: MediaPolicy) -> ImageRef:
    if not isinstance(source, str):
        raise RequestError(
            field, f"an image must be a string (data URI, path or URL), got {type(source).__name__}"
        )
    s = source.strip()
    if not s:
        raise RequestError(field, "empty image source")
    if s[:5].lower() == "data:":
        return ImageRef(data=_data_uri(s, field, policy), where=field)
    scheme = urlsplit(s).scheme.lower() if "://" in s[:16] else ""
    if scheme in ("http", "https"):
        return ImageRef(data=_fetch(s, field, policy), where=field)
    if scheme == "file":
        return _local(s[len("file://") :], field, policy)
    if scheme:
        raise RequestError(field, f"unsupported image URL scheme {scheme!r}; send a data URI")
    raw = _bare_base64(s)
    if raw is not None:
        _check_size(len(raw), field, policy)
        return ImageRef(data=raw, where=field)
    return _local(s, field, policy)


def _check_size(n: int, field: str, policy: MediaPolicy) -> None:
    if n > policy.max_image_bytes:
        raise RequestError(field, f"image is {n} bytes, over the limit of {policy.max_image_bytes}")


def _data_uri(s: str, field: str, policy: MediaPolicy) -> bytes:
    m = _DATA_URI.fullmatch(s)
    if m is None:
        raise RequestError(field, "malformed data URI (expected data:image/<type>;base64,<payload>)")
    if "base64" not in [p.strip().lower() for p in m["params"].split(";")]:
        raise RequestError(field, "only base64 data URIs are accepted (data:image/<type>;base64,...)")
    payload = "".join(m["payload"].split())
    # 4 base64 characters carry 3 bytes: refuse an oversized payload before decoding it.
    _check_size(len(payload) * 3 // 4, field, policy)
    try:
        data = base64.b64decode(payload.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(field, f"image data URI is not valid base64 ({e})") from e
    if not data:
        raise RequestError(field, "image data URI is empty")
    return data


def _bare_base64(s: str) -> bytes | None:
    """Bytes if `s` is base64 of an image file, else None (then `s` is treated as a path)."""
    if len(s) < 64 or not _B64.fullmatch(s):
        return None
    try:
        data = base64.b64decode("".join(s.split()).replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if data.startswith(_MAGIC) else None


def _local(path: str, field: str, policy: MediaPolicy) -> ImageRef:
    if policy.image_root is None:
        raise RequestError(
            field,
            "local image paths are disabled on this server (start it with --image-root DIR), send a data URI",
        )
    if "\0" in path:  # the OS would refuse it with a ValueError: no file has this name
        raise RequestError(field, "image path may not contain a NUL character")
    p = Path(path)
    if ".." in p.parts or ".." in path.replace("\\", "/").split("/"):
        raise RequestError(field, "image path may not contain '..'")
    root = policy.image_root.resolve()
    try:
        full = (p if p.is_absolute() else root / p).resolve()
        inside = full.is_relative_to(root)
        found = inside and full.is_file()
        size = full.stat().st_size if found else 0
    except (OSError, ValueError) as e:  # a name too long, one the file system cannot encode...
        # strerror, not str(e): that would show the client the server's own path to the root
        raise RequestError(field, f"unusable image path: {getattr(e, 'strerror', None) or e}") from e
    if not inside:
        raise RequestError(field, "image path is outside the server's image root")
    if not found:
        raise RequestError(field, f"image file not found under the image root: {path}")
    _check_size(size, field, policy)
    return ImageRef(path=str(full), where=field)


def check_pixels(ref: ImageRef, policy: MediaPolicy) -> ImageRef:
    """Refuse an unreadable image, one over the pixel limit or one too elongated for the vision processor, from its
    header alone (`ImageRef.verify` without the decode, which the encoder does next). Video frames are decoded by
    a path with no pixel guard of its own, and the processor's own refusals are ValueErrors the service cannot tell
    from a bug, so both must be caught here."""
    try:
        replace(ref, where="").verify(policy.max_image_pixels, decode=False)
    except DataError as e:
        raise RequestError(ref.where, str(e)) from e
    return ref


def url_allowed(url: str, prefixes: tuple[str, ...]) -> bool:
    """Scheme and host must equal a prefix's, and the path must start with its path: `https://a.org/img/` allows
    `https://a.org/img/x.png`, not `https://a.org.evil.com/img/x.png` nor `https://a.org/other/x.png`."""
    u = urlsplit(url)
    for prefix in prefixes:
        p = urlsplit(prefix)
        if (u.scheme.lower(), u.netloc.lower()) == (p.scheme.lower(), p.netloc.lower()) and u.path.startswith(
            p.path or "/"
        ):
            return True
    return False


def _fetch(url: str, field: str, policy: MediaPolicy) -> bytes:
    if not url_allowed(url, policy.allow_url_prefixes):
        why = (
            "no remote URL is allowed"
            if not policy.allow_url_prefixes
            else "the URL is not under an allowed prefix"
        )
        raise RequestError(field, f"remote image URL refused: {why} (server option --allow-url-prefix)")
    import httpx

    try:
        with httpx.stream("GET", url, timeout=policy.fetch_timeout_s, follow_redirects=False) as r:
            if r.status_code != 200:
                raise RequestError(field, f"fetching the image URL gave HTTP {r.status_code}")
            chunks, n = [], 0
            for chunk in r.iter_bytes():
                n += len(chunk)
                _check_size(n, field, policy)
                chunks.append(chunk)
    except httpx.HTTPError as e:
        raise RequestError(field, f"could not fetch the image URL ({type(e).__name__})") from e
    return b"".join(chunks)


def ref_bytes(ref: ImageRef) -> int:
    """Memory an image reference holds: its encoded bytes, or (a path under the image root) about a path's worth."""
    return len(ref.data) if ref.data is not None else 256


class MediaRegistry:
    """uid -> a prompt's images, for clients that cannot attach media to each request (docs/server-api.md
    §4): they register the images once with `POST /v1/media`, then text-only `/get_reward` queries carrying that uid
    are scored with them. Bounded by entries and by the bytes the images hold (`max_bytes`): least recently used
    entries go first. A count alone would not bound memory: 100,000 entries of 16 images of 32 MB each is 51 TB.
    Safe to call from several threads."""

    def __init__(self, max_entries: int = 100_000, max_bytes: int | None = 1024 * 1024 * 1024):
        import threading
        from collections import OrderedDict

        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0  # what the stored entries hold now
        self._items: OrderedDict[str, tuple[list[ImageRef], int]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, uid: str, images: list[ImageRef]) -> None:
        """Store (or replace) `uid`'s images, evicting the least recently used entries until the bounds hold.
        Raises `RequestError` when these images alone are over the byte budget: nothing is evicted for them."""
        size = sum(ref_bytes(r) for r in images)
        if self.max_bytes is not None and size > self.max_bytes:
            raise RequestError(
                "images", f"{size} bytes of images, over the media registry's budget of {self.max_bytes}"
            )
        with self._lock:
            old = self._items.pop(uid, None)
            if old is not None:
                self.bytes -= old[1]
            self._items[uid] = (list(images), size)
            self.bytes += size
            while len(self._items) > self.max_entries or (
                self.max_bytes is not None and self.bytes > self.max_bytes
            ):
                _, (_, freed) = self._items.popitem(last=False)
                self.bytes -= freed

    def get(self, uid: str | None) -> list[ImageRef] | None:
        if uid is None:
            return None
        with self._lock:
            entry = self._items.get(uid)
            if entry is None:
                return None
            self._items.move_to_end(uid)
            return entry[0]

    def __contains__(self, uid: str) -> bool:
        with self._lock:
            return uid in self._items

    def __len__(self) -> int:
        return len(self._items)
