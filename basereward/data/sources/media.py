"""Where a source's images live and how a row's image reference becomes an `ImageRef`.

Roots are folders, zip archives (also a zip split into parts, MMPR's `images.zip_aa/_ab/_ac`, read through a
concatenating file object so it is never joined on disk), and tar archives (OmniAlign-V's `images.tar`).
Archive members are read lazily, one row at a time. Public path conventions differ by a leading folder or two
(`MMPR-v1.2/images/<Source>/x.jpg` in the annotations vs `images/<Source>/x.jpg` in the zip), so a reference
is tried with its leading components dropped one by one, and against archive members carrying an extra prefix.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import io
import tarfile
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from basereward.types import DataError, ImageRef


class Media:
    """One or more image roots, searched in order."""

    def __init__(self, roots: list[Path], label: str):
        self.label = label
        self._roots = [_open_root(Path(r), label) for r in roots]

    def image(self, ref: str, where: str) -> ImageRef:
        """The image `ref` names (a path relative to some root). DataError naming `where` if it is missing."""
        found = self.find(ref, where)
        if found is None:
            roots = ", ".join(r.name for r in self._roots) or "no image root given (--images)"
            raise DataError(f"{where}: missing image: {ref!r} not found in {roots}")
        return found

    def find(self, ref: str, where: str) -> ImageRef | None:
        if not isinstance(ref, str) or not ref.strip():
            raise DataError(f"{where}: an image reference must be a non-empty path string, got {ref!r}")
        parts = [p for p in ref.replace("\\", "/").split("/") if p not in ("", ".")]
        for root in self._roots:
            hit = root.get(parts, where)
            if hit is not None:
                return hit
        return None

    def close(self) -> None:
        for r in self._roots:
            r.close()


def image_cell(cell: Any, where: str, field: str, media: Media | None = None) -> ImageRef:
    """An image stored in the row itself: the HF `Image` struct `{bytes, path}` or raw bytes; a struct that
    only has a path (or a plain path string) is looked up in `media`."""
    if isinstance(cell, bytes | bytearray):
        return ImageRef(data=bytes(cell), where=where)
    if isinstance(cell, dict):
        raw = cell.get("bytes")
        if isinstance(raw, str):  # a JSON export of the rows carries the bytes as base64 text
            try:
                raw = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError) as e:
                raise DataError(f"{where}: field '{field}' bytes are not valid base64") from e
        if isinstance(raw, bytes | bytearray) and (raw or not cell.get("path")):
            # zero bytes and no path: an image that is there but empty, which the image check calls corrupt
            # (not "missing", which would send the user looking for a field that is present)
            return ImageRef(data=bytes(raw), where=where)
        if raw is not None and not isinstance(raw, bytes | bytearray):
            raise DataError(f"{where}: field '{field}' bytes must be binary, got {type(raw).__name__}")
        cell = cell.get("path")
    if isinstance(cell, str) and cell and media is not None:
        return media.image(cell, where)
    if cell is None:
        raise DataError(f"{where}: missing required field '{field}'")
    raise DataError(f"{where}: field '{field}' holds no image bytes and no resolvable path")


def _open_root(path: Path, label: str):
    if path.is_dir():
        return _Folder(path)
    parts = _zip_parts(path)
    if parts:
        return _Zip(parts)
    if path.is_file() and tarfile.is_tarfile(path):
        return _Tar(path)
    raise DataError(f"[{label}] image root not found or not a folder/zip/tar: {path}")


def _zip_parts(path: Path) -> list[Path]:
    """`x.zip` -> [x.zip]; `x.zip_aa` (or the stem `x.zip` when only parts exist) -> all `x.zip_??` parts."""
    if path.is_file() and zipfile.is_zipfile(path):
        return [path]
    stem = path.name[:-3] if path.name[-3:-2] == "_" else path.name
    parts = sorted(path.parent.glob(stem + "_??"))
    return parts if parts else []


class _Folder:
    def __init__(self, path: Path):
        self.path, self.name = path, str(path)

    def get(self, parts: list[str], where: str) -> ImageRef | None:
        for i in range(len(parts)):
            p = self.path.joinpath(*parts[i:])
            if p.is_file():
                return ImageRef(path=str(p), where=where)
        return None

    def close(self) -> None:
        pass


class _Archive:
    """Member lookup shared by zip and tar: exact relative path, then by suffix for members with extra
    prefixes."""

    def _index(self, names: list[str]) -> None:
        self._names = set(names)
        self._by_base: dict[str, list[str]] = defaultdict(list)
        for n in names:
            self._by_base[n.rsplit("/", 1)[-1]].append(n)

    def get(self, parts: list[str], where: str) -> ImageRef | None:
        name = self.resolve(parts, where)
        return None if name is None else ImageRef(data=self._read(name, where), where=where)

    def resolve(self, parts: list[str], where: str = "") -> str | None:
        """The member a relative path names: exact (leading folders dropped one by one), then a member with an
        extra leading folder whose longest matching tail (at least folder/file, so a bare file name never
        picks an unrelated image) is unambiguous."""
        for i in range(len(parts)):
            name = "/".join(parts[i:])
            if name in self._names:
                return name
        for i in range(max(1, len(parts) - 1)):
            tail = "/" + "/".join(parts[i:])
            hits = [n for n in self._by_base.get(parts[-1], ()) if n.endswith(tail)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise DataError(f"{where}: image {'/'.join(parts)!r} matches several members of {self.name}")
        return None


class _Zip(_Archive):
    def __init__(self, parts: list[Path]):
        self.name = str(parts[0]) + (f" (+{len(parts) - 1} parts)" if len(parts) > 1 else "")
        fh = (
            io.BufferedReader(_ConcatFile(parts), buffer_size=1 << 20)
            if len(parts) > 1
            else open(parts[0], "rb")
        )
        try:
            self._zip = zipfile.ZipFile(fh)
        except zipfile.BadZipFile as e:
            raise DataError(f"unreadable zip archive {self.name}: {e}") from e
        self._index([i.filename for i in self._zip.infolist() if not i.is_dir()])

    def _read(self, name: str, where: str) -> bytes:
        try:
            return self._zip.read(name)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise DataError(f"{where}: unreadable member {name!r} of {self.name}: {e}") from e

    def open_member(self, name: str):
        return self._zip.open(name)

    def close(self) -> None:
        self._zip.close()


class _Tar(_Archive):
    def __init__(self, path: Path):
        self.name = str(path)
        self._tar = tarfile.open(path, "r:*")
        # getmembers() walks the headers once; reads afterwards seek straight to a member.
        self._members = {m.name.removeprefix("./"): m for m in self._tar.getmembers() if m.isfile()}
        self._index(list(self._members))

    def _read(self, name: str, where: str) -> bytes:
        try:
            return self._tar.extractfile(self._members[name]).read()
        except (tarfile.TarError, OSError) as e:
            raise DataError(f"{where}: unreadable member {name!r} of {self.name}: {e}") from e

    def close(self) -> None:
        self._tar.close()


def open_zip(path: Path, label: str) -> _Zip:
    """A zip (or split zip) archive, for sources that keep annotations in one (MMPR `annotations.zip`)."""
    parts = _zip_parts(path)
    if not parts:
        raise DataError(f"[{label}] zip archive not found: {path}")
    return _Zip(parts)


class _ConcatFile(io.RawIOBase):
    """Read-only, seekable view of several files as one (a zip split with `split -b`)."""

    def __init__(self, parts: list[Path]):
        self._files = [open(p, "rb") for p in parts]
        sizes = [p.stat().st_size for p in parts]
        self._starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self._sizes, self._size, self._pos = sizes, sum(sizes), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        if self._pos >= self._size:
            return 0
        i = bisect.bisect_right(self._starts, self._pos) - 1
        local = self._pos - self._starts[i]
        view = memoryview(buffer)[: min(len(buffer), self._sizes[i] - local)]
        self._files[i].seek(local)
        n = self._files[i].readinto(view)
        self._pos += n
        return n

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()
