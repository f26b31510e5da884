"""Fuzzing the reward server: requests generated from the app's own OpenAPI schema (schemathesis) on every operation,
and hypothesis strategies for the image fields sent in every request shape that carries images.

What must hold for every request: no 5xx; each answer is one the schema documents (code, content type, body); a
refusal is a 4xx `ErrorResponse` whose `errors` name the offending field; no file outside the media root is ever
opened and no URL outside the allow-list is ever fetched. The default suite sends a few hundred requests with
fixed seeds (`derandomize`, no example database), so a run is the same every time; `-m slow` sends over 5,000.
Hypothesis keeps its caches (unicode tables) in a temporary folder, never in the repository.
"""

from __future__ import annotations

import base64
import builtins
import dataclasses
import io
import math
import os
import struct
import tempfile
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.configuration import set_hypothesis_home_dir  # noqa: E402
from PIL import Image  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.errors import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from serve_fixtures import make_reward_model, png, service  # noqa: E402

from basereward.serve.app import create_app  # noqa: E402
from basereward.serve.media import MediaPolicy  # noqa: E402
from basereward.types import MAX_ASPECT_RATIO  # noqa: E402

# Hypothesis caches what it learns of the source (constants, unicode tables) under its home, by default
# ./.hypothesis: set before the strategies below are built, which already writes there, and kept out of the repo.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "basereward-hypothesis")

ALLOWED = "https://allowed.example.org/img/"  # the one allow-listed URL prefix; its fetches are faked
MAX_PIXELS = 256 * 256
CHAT = "<|im_start|>user\n{}What colour is it?<|im_end|>\n<|im_start|>assistant\nRed.<|im_end|>"
VISION = "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>"
# Every check below holds for every generated request. positive_data_acceptance is not among them: a request
# can match the schema and still be refused (an image that does not decode, a text without a chat turn).
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)


# ---- the server under test ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Server:
    client: TestClient
    root: Path  # the media root (--image-root)
    outside: Path  # a folder beside it holding a secret image; symlinks in the root point here
    opened_outside: list[str]  # files under `outside` that anything in the process opened
    fetched: list[str]  # URLs the server fetched (through the faked httpx.stream)


class FakeStream:
    """httpx.stream as the media fetcher uses it: records the URL and serves a PNG, without a network."""

    calls: list[str] = []

    def __init__(self, method, url, **kw):
        FakeStream.calls.append(url)
        self.status_code = 200

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def iter_bytes(self):
        yield png("purple", size=(40, 40))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import httpx

    root, outside = tmp_path_factory.mktemp("media-root"), tmp_path_factory.mktemp("outside")
    (root / "sub").mkdir()
    (root / "ok.png").write_bytes(png("blue"))
    (root / "sub" / "ok.png").write_bytes(png("green", size=(60, 30)))
    (outside / "secret.png").write_bytes(png("black"))
    os.symlink(outside / "secret.png", root / "link.png")  # a file symlink out of the root
    os.symlink(outside, root / "dirlink")  # a directory symlink out of the root
    rm = make_reward_model(tmp_path_factory.mktemp("fuzz-rm"))
    policy = MediaPolicy(
        image_root=root, allow_url_prefixes=(ALLOWED,), max_images=4, max_image_pixels=MAX_PIXELS
    )
    app = create_app(
        service(rm, policy=policy, max_wait_ms=1.0, max_tokens=2048),
        max_body_bytes=8 * 1024 * 1024,
        get_reward_paths=("/get_reward", "/reward"),  # an alias path is an operation of its own
    )
    opened: list[str] = []
    real_open = builtins.open
    outside_real = os.path.realpath(outside)

    def watching_open(file, *args, **kwargs):
        # PIL, pathlib and everything else open files through this: any file under `outside` is a leak
        if isinstance(file, (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(file))
            if path.startswith(outside_real + os.sep):
                opened.append(path)
        return real_open(file, *args, **kwargs)

    FakeStream.calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builtins, "open", watching_open)
        mp.setattr(io, "open", watching_open)
        mp.setattr(httpx, "stream", FakeStream)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Server(client, root, outside, opened, FakeStream.calls)


# ---- schemathesis: every operation of the server's own schema ------------------------------------------------


@dataclasses.dataclass
class Tally:
    requests: int = 0
    by_operation: dict = dataclasses.field(default_factory=dict)
    codes: dict = dataclasses.field(default_factory=dict)  # operation -> the status codes it answered
    server_errors: list = dataclasses.field(default_factory=list)  # (operation, status, curl)
    failures: list = dataclasses.field(default_factory=list)  # (operation, check, message)


def fuzz_schema(client: TestClient, max_examples: int, seed: int | None = None) -> Tally:
    """Send `max_examples` generated requests per operation and generation mode (positive: bodies the schema
    accepts; negative: bodies it refuses), run every check on each answer and count what was sent. Failures are
    tallied, not raised, so one run reports them all (and nothing is shrunk)."""
    schema = schemathesis.openapi.from_dict(client.app.openapi())
    tally = Tally()
    operations = [result.ok() for result in schema.get_all_operations()]
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and not op.body:
                continue  # a GET without parameters has no invalid form
            fuzz_operation(client, tally, op, mode, max_examples, seed)
    return tally


def request_kwargs(case) -> dict:
    """schemathesis' requests-style arguments for the TestClient (httpx): raw bytes go as `content`, and the
    always-empty per-request cookies, which httpx deprecates, are left out."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    assert not kwargs.pop("cookies", None)  # the schema has no cookie parameters
    if isinstance(kwargs.get("data"), (bytes, str)):
        kwargs["content"] = kwargs.pop("data")
    return kwargs


def fuzz_operation(client, tally: Tally, op, mode, max_examples: int, seed: int | None) -> None:
    checks = list(CHECKS)
    if mode is GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)  # a body the schema refuses must be answered with a 4xx

    @settings(
        max_examples=max_examples,
        derandomize=seed is None,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def send(case):
        response = client.request(**request_kwargs(case))
        tally.requests += 1
        tally.by_operation[op.label] = tally.by_operation.get(op.label, 0) + 1
        tally.codes.setdefault(op.label, set()).add(response.status_code)
        if response.status_code >= 500:
            tally.server_errors.append((op.label, response.status_code, case.as_curl_command()))
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as e:
            tally.failures.append((op.label, mode.value, str(e)[:2000]))

    if seed is not None:
        send = hypothesis.seed(seed)(send)
    send()


def test_schema_fuzz_every_operation_short(server):
    tally = fuzz_schema(server.client, max_examples=12)
    print(f"\nschema fuzz: {tally.requests} requests, {len(tally.server_errors)} 5xx")
    assert tally.server_errors == [], tally.server_errors[:3]
    assert tally.failures == [], tally.failures[:3]
    # every operation was exercised, the alias path of /get_reward included
    assert set(tally.by_operation) == {
        *(f"POST {p}" for p in ("/v1/reward", "/v1/media", "/get_reward", "/reward", "/classify")),
        *(f"POST {p}" for p in ("/v1/classify", "/pooling", "/v1/embeddings", "/v1/score/evaluation")),
        *(f"GET {p}" for p in ("/health", "/v1/models", "/metrics")),
    }
    assert tally.requests >= 200
    assert {400, 422} <= set().union(*tally.codes.values())  # malformed JSON and invalid fields both met
    assert server.client.get("/health").status_code == 200  # still serving
    assert server.opened_outside == []


@pytest.mark.slow
def test_schema_fuzz_every_operation_5000_requests(server):
    import time

    t0 = time.monotonic()
    tally = fuzz_schema(server.client, max_examples=300, seed=20261206)
    wall = time.monotonic() - t0
    print(
        f"\nschema fuzz: {tally.requests} requests, {len(tally.server_errors)} 5xx, "
        f"{len(tally.failures)} check failures, {wall:.0f} s; by operation: {tally.by_operation}"
    )
    assert tally.requests >= 5000
    assert tally.server_errors == [], tally.server_errors[:3]
    assert tally.failures == [], tally.failures[:3]
    assert server.opened_outside == []


def test_schema_fuzz_without_the_api_key_is_401_everywhere_but_health(tmp_path):
    """With --api-key the schema documents 401 and every generated request without the key gets it."""
    rm = make_reward_model(tmp_path)
    with TestClient(create_app(service(rm), api_key="k"), raise_server_exceptions=False) as client:
        spec = client.app.openapi()
        assert "401" not in spec["paths"]["/health"]["get"]["responses"]
        assert "401" in spec["paths"]["/metrics"]["get"]["responses"]
        tally = fuzz_schema(client, max_examples=3)
    assert tally.server_errors == [] and tally.failures == [], (tally.server_errors, tally.failures[:3])
    assert tally.codes.pop("GET /health") == {200}
    assert len(tally.codes) == 10 and all(codes == {401} for codes in tally.codes.values()), tally.codes


# ---- the documented schema itself -----------------------------------------------------------------------------


def test_schema_documents_the_error_body_and_metrics_as_text(server):
    spec = server.client.app.openapi()
    reward = spec["paths"]["/v1/reward"]["post"]["responses"]
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for code in ("400", "413", "422", "429", "500", "503"):
        assert reward[code]["content"]["application/json"]["schema"] == error_ref, code
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # FastAPI's 422 shape is never sent
    assert list(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]


# ---- hypothesis: the image fields -----------------------------------------------------------------------------
# Each source is tagged with what the server must answer: "ok" (a 200 in a shape that scores images), "refused"
# (a 4xx, whatever the shape) or "any" (a 200 or a 4xx: truncated or corrupted bytes may still decode).


def encoded(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


# modes each format writes and reads back (PIL 13); F and I;16 are the 32-bit float and 16-bit grey clients meet
MODES = {
    "PNG": ["RGB", "RGBA", "L", "LA", "P", "1", "I;16"],
    "JPEG": ["RGB", "L", "1", "CMYK"],
    "GIF": ["RGB", "RGBA", "L", "P", "1"],
    "BMP": ["RGB", "RGBA", "L", "P", "1"],
    "TIFF": ["RGB", "RGBA", "L", "P", "1", "I;16", "CMYK", "F"],
    "WEBP": ["RGB", "RGBA", "L"],
}


@st.composite
def image_bytes(draw) -> bytes:
    fmt = draw(st.sampled_from(sorted(MODES)))
    mode = draw(st.sampled_from(MODES[fmt]))
    size = (draw(st.integers(1, 48)), draw(st.integers(1, 48)))
    return encoded(Image.new(mode, size), fmt)


def png_declaring(width: int, height: int, idat: bytes) -> bytes:
    """A PNG whose header declares width x height (CRCs right), followed by `idat` as its only data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


@st.composite
def huge_header(draw):
    w, h = draw(st.integers(1, 2**31 - 1)), draw(st.integers(1, 2**31 - 1))
    idat = draw(st.one_of(st.binary(max_size=64), st.just(zlib.compress(b"\x00" * 64))))
    over = w * h > MAX_PIXELS or max(w, h) > MAX_ASPECT_RATIO * min(w, h)
    return ("refused" if over else "any", uri(png_declaring(w, h, idat)))


@st.composite
def truncated(draw):
    data = draw(image_bytes())
    return ("any", uri(data[: draw(st.integers(0, len(data) - 1))]))


@st.composite
def corrupted(draw):
    data = bytearray(draw(image_bytes()))
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return ("any", uri(bytes(data)))


@st.composite
def escaping_paths(draw):
    """Paths that name a file outside the root: '..' in every spelling, symlinks, absolute paths, file:// URLs."""
    root = "{root}"  # filled in per request, the root's real absolute path
    dotdot = st.lists(
        st.sampled_from(["..", ".", "sub", "dirlink", "outside", "secret.png"]), min_size=1, max_size=6
    )
    kind = draw(st.sampled_from(["dotdot", "symlink", "absolute", "file-url"]))
    if kind == "dotdot":
        parts = draw(dotdot)
        if ".." not in parts:
            parts.insert(draw(st.integers(0, len(parts))), "..")
        path = draw(st.sampled_from(["/", "\\", "//"])).join(parts)
        return draw(st.sampled_from([path, f"{root}/{path}", f"file://{root}/{path}"]))
    if kind == "symlink":
        return draw(st.sampled_from(["link.png", "dirlink/secret.png", "./link.png", "sub/../link.png"]))
    if kind == "absolute":
        return draw(
            st.sampled_from(["{outside}/secret.png", "/etc/passwd", "/etc/hostname", "/proc/self/environ"])
        )
    return draw(
        st.sampled_from(["file://{outside}/secret.png", "file:///etc/passwd", "file://{root}/link.png"])
    )


@st.composite
def refused_urls(draw):
    scheme = draw(st.sampled_from(["http", "https", "ftp", "gopher", "file", "HTTPS", "ws"]))
    host = draw(
        st.sampled_from(
            [
                "allowed.example.org.evil.com",
                "evil.com",
                "allowed.example.org@evil.com",
                "evil.com#@allowed.example.org",
                "127.0.0.1",
                "[::1]",
                "localhost",
                "169.254.169.254",
            ]
        )
    )
    path = draw(st.sampled_from(["/img/a.png", "/imgx/a.png", "/", "/latest/meta-data/", "/img/../x.png"]))
    return f"{scheme}://{host}{path}"  # none of these hosts is the allowed one


def long_strings():
    # built by repetition: hypothesis draws a character and a count, not 300,000 characters one by one
    pieces = st.sampled_from(["A", "a/", "../", "%2e%2e/", "é", "😀", "data:image/png;base64,", "\\"])
    return st.builds(lambda piece, n: piece * n, pieces, st.integers(1000, 300_000))


def image_sources():
    """(expectation, source) pairs for one image field."""
    ok = st.one_of(
        image_bytes().map(lambda b: ("ok", uri(b))),
        # bare base64 (no data: prefix), told from a path by the image file's leading bytes
        st.tuples(st.integers(1, 48), st.integers(1, 48)).map(
            lambda size: ("ok", base64.b64encode(png("orange", size=size)).decode())
        ),
        st.sampled_from(
            ["ok.png", "sub/ok.png", "./ok.png", "file://{root}/ok.png", "{root}/sub/ok.png"]
        ).map(lambda p: ("ok", p)),
        st.sampled_from(["a.png", "deep/b.png"]).map(lambda p: ("ok", ALLOWED + p)),
    )
    refused = st.one_of(
        st.binary(min_size=1, max_size=200).map(lambda b: ("refused", uri(b))),
        st.text(min_size=1, max_size=40).map(lambda t: ("refused", "data:image/png;base64," + t + "@")),
        st.sampled_from(
            [
                "data:image/png,AAAA",
                "data:;base64,",
                "data:image/png;base64",
                "data:image/png;base64,====",
                "data:image/png;base64,\udc80",
                "DATA:image/png;BASE64,QUJD",
                "data:image/png;charset=utf-8,abc",
                "",
                "   ",
                "ok.png\x00.txt",
                "\ud800.png",
                "missing.png",
                "sub",
                "javascript:alert(1)",
                "mailto:x@y.z",
                uri(encoded(Image.new("RGB", (1, 250)), "PNG")),  # past the processors' aspect ratio
                uri(encoded(Image.new("RGB", (300, 1)), "PNG")),
                uri(encoded(Image.new("RGB", (300, 300)), "PNG")),  # over the pixel limit
            ]
        ).map(lambda s: ("refused", s)),
        escaping_paths().map(lambda p: ("refused", p)),
        refused_urls().map(lambda u: ("refused", u)),
        st.one_of(
            st.none(),
            st.integers(),
            st.floats(allow_nan=False, allow_infinity=False),  # JSON has neither
            st.booleans(),
            st.lists(st.integers(), max_size=3),
            st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
        ).map(lambda v: ("refused", v)),
    )
    refused = st.one_of(
        refused, long_strings().map(lambda s: ("refused", s))
    )  # never a file name, nor base64
    maybe = st.one_of(huge_header(), truncated(), corrupted())
    return st.one_of(ok, refused, maybe)


# Request shapes: (route, the body carrying one image source, the field prefixes its errors may name)
def native(content, **extra):
    messages = [{"role": "user", "content": content}, {"role": "assistant", "content": "It is red."}]
    return {"samples": [{"messages": messages, **extra}], "return": ["raw", "prob"]}


def image_url_part(src):
    return [{"type": "image_url", "image_url": {"url": src}}, {"type": "text", "text": "What colour is it?"}]


SHAPES = {
    "native images": (
        "/v1/reward",
        lambda s: native("<image>What colour is it?", images=[s]),
        ("samples[0].images",),
    ),
    "native image_url": (
        "/v1/reward",
        lambda s: native(image_url_part(s)),
        ("samples[0].messages[0].content[0].image_url",),
    ),
    "native image_url string": (
        "/v1/reward",
        lambda s: native([{"type": "image_url", "image_url": s}]),
        ("samples[0].messages[0].content[0].image_url",),
    ),
    "native image part": (
        "/v1/reward",
        lambda s: native([{"type": "image", "image": s}, {"type": "text", "text": "Colour?"}]),
        ("samples[0].messages[0].content[0].image", "samples[0].images"),  # null: a placeholder left unfilled
    ),
    "native video frame": (
        "/v1/reward",
        lambda s: native([{"type": "video", "video": [s]}, {"type": "text", "text": "What happens?"}]),
        ("samples[0].messages[0].content[0].video",),
    ),
    "openrlhf images": (
        "/get_reward",
        lambda s: {"query": [CHAT.format(VISION)], "images": [[s]]},
        ("images[0]",),
    ),
    "openrlhf alias, label images": (
        "/reward",
        lambda s: {"query": [CHAT.format(VISION)], "labels": [{"gt": "red", "images": [s], "uid": "u"}]},
        ("labels[0].images",),
    ),
    "vllm classify": (
        "/classify",
        lambda s: {"messages": native(image_url_part(s))["samples"][0]["messages"]},
        ("messages[0].content[0].image_url",),
    ),
    "vllm pooling": (
        "/pooling",
        lambda s: {"task": "classify", "messages": native(image_url_part(s))["samples"][0]["messages"]},
        ("messages[0].content[0].image_url",),
    ),
    "media registry": ("/v1/media", lambda s: {"uid": "fuzz", "images": [s]}, ("images",)),
}
# Text-only contracts: an image placeholder in their text can never be filled, so it is always refused (never scored
# as text-only); a source that is not text is refused by type.
TEXT_ONLY = {
    "llamafactory": (
        "/v1/score/evaluation",
        lambda s: {"messages": [CHAT.format(VISION + s) if isinstance(s, str) else s]},
        ("messages[0]",),
    ),
    "sglang embeddings": (
        "/v1/embeddings",
        lambda s: {"input": CHAT.format(VISION + s) if isinstance(s, str) else s},
        ("input",),
    ),
}


def fill(src, server: Server):
    """Put the fixture's real folders into a templated source."""
    if isinstance(src, str) and "{" in src:
        return src.replace("{root}", str(server.root)).replace("{outside}", str(server.outside))
    return src


def check_answer(r, expect: str, prefixes: tuple[str, ...], what) -> None:
    assert r.status_code < 500, (what, r.status_code, r.text[:500])
    if r.status_code == 200:
        assert expect != "refused", (what, r.text[:300])
        body = r.json()
        numbers = [x["raw"] for x in body.get("results", [])] + body.get("rewards", [])
        numbers += [x["probs"][0] for x in body.get("data", []) if "probs" in x]
        numbers += [x["data"][0] for x in body.get("data", []) if x.get("object") == "pooling"]
        assert all(math.isfinite(x) for x in numbers), (what, body)
        return
    assert 400 <= r.status_code < 500, (what, r.status_code)
    assert expect != "ok", (what, r.status_code, r.text[:500])
    err = r.json()
    assert err["error"]["code"] == r.status_code and err["errors"], (what, err)
    fields = [e["field"] for e in err["errors"]]
    assert any(f.startswith(prefixes) for f in fields), (what, prefixes, fields)
    assert err["error"]["param"] == fields[0]


# PIL warns when it opens a header declaring more pixels than its own bomb limit; the server refuses it before that
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(source=image_sources(), shape=st.sampled_from(sorted(SHAPES) + sorted(TEXT_ONLY)))
def test_image_fields_are_4xx_naming_the_field_or_200_never_5xx(server, source, shape):
    expect, src = source
    src = fill(src, server)
    text_only = shape in TEXT_ONLY
    route, build, prefixes = (TEXT_ONLY if text_only else SHAPES)[shape]
    fetched_before = len(server.fetched)
    r = server.client.post(route, json=build(src))
    check_answer(r, "refused" if text_only else expect, prefixes, what=(shape, src))
    assert server.opened_outside == [], server.opened_outside
    for url in server.fetched[fetched_before:]:  # only allow-listed URLs are ever fetched
        u = urlsplit(url)
        assert (u.scheme, u.netloc) == ("https", "allowed.example.org") and u.path.startswith("/img/"), url


# ---- regressions: what the fuzzing found --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "route,body,field",
    [
        # no prompt before the response: the chat template raised IndexError (500)
        (
            "/v1/reward",
            {"samples": [{"messages": [{"role": "assistant", "content": "yo"}]}]},
            "samples[0].messages",
        ),
        ("/classify", {"messages": [{"role": "assistant", "content": "yo"}]}, "messages"),
        ("/classify", {"messages": []}, "messages"),
        ("/get_reward", {"query": ["<|im_start|>assistant\nyo<|im_end|>"]}, "query[0]"),
        # an image past the vision processor's aspect ratio: a ValueError inside smart_resize (500)
        (
            "/v1/reward",
            native("<image>hi", images=[uri(encoded(Image.new("RGB", (1, 250)), "PNG"))]),
            "samples[0].images[0]",
        ),
        (
            "/v1/reward",
            native([{"type": "video", "video": [uri(encoded(Image.new("RGB", (250, 1)), "PNG"))]}]),
            "samples[0].messages[0].content[0].video[0]",
        ),
        ("/v1/media", {"uid": "u", "images": [uri(encoded(Image.new("RGB", (1, 250)), "PNG"))]}, "images[0]"),
        # paths the OS refuses: a ValueError (NUL) or OSError (name too long) escaped the path check (500)
        ("/v1/reward", native("<image>hi", images=["ok\x00.png"]), "samples[0].images[0]"),
        ("/v1/reward", native("<image>hi", images=["a" * 5000]), "samples[0].images[0]"),
        (
            "/get_reward",
            {"query": [CHAT.format(VISION)], "labels": [{"images": ["\ud800.png"]}]},
            "labels[0].images[0]",
        ),
        # lone surrogates: the tokenizer (TypeError), a response echoing the uid and an error message quoting a
        # path (UnicodeEncodeError) were each a 500
        ("/v1/reward", native("hi \udc80"), "samples[0].messages[0].content"),
        (
            "/v1/reward",
            {**native("hi"), "samples": [{**native("hi")["samples"][0], "uid": "\udc80"}]},
            "samples[0].uid",
        ),
        ("/classify", {"input": CHAT.format(""), "model": "\udc80"}, "model"),
        ("/v1/reward", native("<image>hi", images=["\udc80.png"]), "samples[0].images[0]"),
    ],
)
def test_regressions_found_by_fuzzing_are_4xx_naming_the_field(server, route, body, field):
    import json

    # json.dumps escapes lone surrogates (\udc80) the way a client's JSON encoder would
    r = server.client.post(
        route, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500, r.text
    assert field in [e["field"] for e in r.json()["errors"]], r.json()


def test_union_branch_names_are_not_part_of_the_field():
    """pydantic reports `image_url.ImageURL.url` for a bad url inside the part's model branch: the field is
    `image_url.url`."""
    from basereward.serve.errors import field_path

    loc = ("body", "samples", 0, "messages", 0, "content", "list[...]", 0, "image_url", "ImageURL", "url")
    assert field_path(loc) == "samples[0].messages[0].content[0].image_url.url"
