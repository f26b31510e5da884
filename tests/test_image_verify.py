"""`ImageRef.verify()`, the one image check: missing, truncated, not an image, absurdly large. Pair files and
`data convert` both go through it and report the same reasons."""

import struct
import zlib

import pytest
from data_fixtures import png, write_jsonl

from basereward.data.convert import convert
from basereward.data.io import LoadStats, read_pairs
from basereward.types import MAX_IMAGE_PIXELS, DataError, ImageRef


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` and has no pixel data: what a decompression bomb's header looks like,
    without allocating anything."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    )


def test_a_good_image_passes_and_loads(tmp_path):
    (tmp_path / "a.png").write_bytes(png(1))
    ImageRef(path=str(tmp_path / "a.png"), where="f:1").verify()
    ImageRef(data=png(2)).verify()
    assert ImageRef(data=png(2)).load().size == (32, 32)


@pytest.mark.parametrize(
    "ref, message",
    [
        (
            lambda d: ImageRef(path=str(d / "gone.png"), where="f:1"),
            r"^f:1: image file not found: .*gone\.png$",
        ),
        (
            lambda d: ImageRef(data=png(0)[:-200], where="f:2"),
            r"^f:2: corrupt or unreadable image: \d+ embedded",
        ),
        (
            lambda d: ImageRef(data=b"GIF89a but not really", where="f:3"),
            r"^f:3: corrupt or unreadable image",
        ),
        (lambda d: ImageRef(data=b"plain text", where="f:4"), r"^f:4: corrupt or unreadable image"),
        (lambda d: ImageRef(where="f:5"), r"^f:5: image has neither a path nor bytes$"),
    ],
    ids=["missing", "truncated", "bad-header", "not-an-image", "empty"],
)
def test_bad_images_fail_naming_where(tmp_path, ref, message):
    with pytest.raises(DataError, match=message):
        ref(tmp_path).verify()


def test_a_truncated_jpeg_fails_the_full_decode():
    """PIL's `verify()` reads a JPEG's header only and passes a cut-off file; the full decode does not."""
    import io

    from data_fixtures import jpeg
    from PIL import Image

    cut = jpeg(0, 64)[:1000]
    with Image.open(io.BytesIO(cut)) as im:
        im.verify()  # the header-only check the old readers used: no complaint
    with pytest.raises(DataError, match="corrupt or unreadable image"):
        ImageRef(data=cut, where="f").verify()


def test_huge_images_are_refused_before_decoding():
    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    bomb = ImageRef(data=png_header(side, side), where="f:9")
    with pytest.raises(
        DataError, match=rf"^f:9: image too large: {side}x{side} = \d+ pixels, over the limit"
    ):
        bomb.verify()
    with pytest.raises(DataError, match="image too large to decode"):  # past PIL's own limit too
        ImageRef(data=png_header(40000, 40000), where="f").verify()
    with pytest.raises(DataError, match="over the limit of 100"):
        ImageRef(data=png(0)).verify(max_pixels=100)


@pytest.mark.parametrize("w, h", [(201, 1), (1, 402)])
def test_images_too_elongated_for_the_vision_processor_are_refused_from_the_header(w, h):
    """Qwen-VL's smart_resize raises a ValueError past a 200:1 aspect ratio: refused here as bad input instead, with
    the location, before any decode (the header declares the size), so eval, score, train and the server alike
    stop or skip it rather than crash mid-run."""
    with pytest.raises(
        DataError, match=rf"^f:3: image too elongated: {w}x{h}, the long side may be at most 200"
    ):
        ImageRef(data=png_header(w, h), where="f:3").verify(decode=False)
    ImageRef(data=png_header(200, 1)).verify(decode=False)  # exactly the processor's limit passes


def test_pair_files_and_converters_use_the_same_check(tmp_path):
    (tmp_path / "bad.png").write_bytes(png(0)[:-200])
    (tmp_path / "big.png").write_bytes(png_header(9000, 9000))
    rows = [
        {"id": f"p{i}", "prompt": "<image>\nQ", "images": [name], "chosen": "a", "rejected": "b"}
        for i, name in enumerate(["bad.png", "big.png"])
    ]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    stats = LoadStats()
    assert read_pairs(path, on_error="skip", stats=stats) == []
    assert stats.skipped == {"corrupt or unreadable image": 1, "image too large": 1}
    report = convert("pairs", path, tmp_path / "out", on_error="skip")
    assert report["skipped"] == {"corrupt or unreadable image": 1, "image too large": 1}
    with pytest.raises(DataError, match=rf"{path}:1 images\[0\]: corrupt or unreadable image: .*bad\.png"):
        read_pairs(path)
