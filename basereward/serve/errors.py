"""How the server fails: every error is a 4xx/5xx `ErrorResponse` whose message names the field, and the body-size
guard (ASGI middleware) answers 413 before a body over the limit is read. It also records each request's route,
status and latency, because it is the one place that sees every response, error answers included."""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from basereward.serve import protocols as P
from basereward.serve.media import RequestError
from basereward.serve.metrics import Metrics
from basereward.serve.parse import BadRequest
from basereward.serve.service import Busy

log = logging.getLogger("basereward.serve")


def error_response(
    code: int, errors: list[P.FieldError], type_: str = "invalid_request_error"
) -> JSONResponse:
    first = errors[0]
    body = P.ErrorResponse(
        error=P.ErrorBody(
            message="; ".join(f"{e.field}: {e.message}" for e in errors),
            type=type_,
            param=first.field,
            code=code,
        ),
        errors=errors,
    )
    return JSONResponse(body.model_dump(), status_code=code)


def field_path(loc) -> str:
    """pydantic's loc ('body', 'samples', 0, 'messages', ...) -> 'samples[0].messages'. Union-branch labels
    ('list[...]', 'str') are dropped and a discriminator tag repeated by its field name is kept once."""
    out: list[str] = []
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif "[" in part or part in ("str", "int", "float", "bool", "none", "list", "dict"):
            continue
        elif not out or out[-1] != f".{part}":
            out.append(f".{part}")
    return "".join(out).lstrip(".") or "body"


async def _invalid(_request, exc: RequestValidationError):
    errs = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errs):
        e = errs[0]
        where = e.get("loc", ["", "?"])[-1]
        return error_response(
            400, [P.FieldError(field="body", message=f"malformed JSON: {e.get('msg')} (at {where})")]
        )
    seen, fields = set(), []
    for e in errs:
        fe = P.FieldError(field=field_path(e.get("loc", ())), message=str(e.get("msg", "invalid")))
        if (fe.field, fe.message) not in seen:
            seen.add((fe.field, fe.message))
            fields.append(fe)
    return error_response(422, fields or [P.FieldError(field="body", message="invalid request")])


async def _bad_request(_request, exc: BadRequest):
    return error_response(422, [P.FieldError(field=e.field, message=e.detail) for e in exc.errors])


async def _request_error(_request, exc: RequestError):
    return error_response(422, [P.FieldError(field=exc.field, message=exc.detail)])


async def _busy(_request, exc: Busy):
    resp = error_response(
        429, [P.FieldError(field="body", message=f"server busy: {exc}")], "rate_limit_error"
    )
    resp.headers["Retry-After"] = "1"  # what the RL clients' retry helper waits before trying again
    return resp


async def _http_error(_request, exc: HTTPException):
    field = "body" if exc.status_code in (400, 413) else "path"
    return error_response(exc.status_code, [P.FieldError(field=field, message=str(exc.detail))])


async def _internal(_request, exc: Exception):
    log.exception("internal error")
    return error_response(
        500, [P.FieldError(field="server", message=f"{type(exc).__name__}")], "server_error"
    )


def install_error_handlers(app: FastAPI) -> None:
    for exc_type, handler in (
        (RequestValidationError, _invalid),
        (BadRequest, _bad_request),
        (RequestError, _request_error),
        (Busy, _busy),
        (HTTPException, _http_error),
        (Exception, _internal),
    ):
        app.add_exception_handler(exc_type, handler)


class BodyGuard:
    """ASGI middleware: refuses bodies over `max_body_bytes` (413, by Content-Length before reading, or while a
    chunked body streams in) and records every request's route, status and latency. Paths outside `routes` are
    counted as "other" so that scanners probing random paths cannot grow the metrics' label sets."""

    def __init__(self, app, metrics: Metrics, max_body_bytes: int, routes: set[str]):
        self.app, self.metrics, self.max_body_bytes, self.routes = app, metrics, max_body_bytes, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.monotonic(), [500]
        route = scope["path"] if scope["path"] in self.routes else "other"

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                code = 413 if length.isdigit() else 400
                why = (
                    f"request body over the limit of {self.max_body_bytes} bytes"
                    if code == 413
                    else "bad length"
                )
                await error_response(code, [P.FieldError(field="body", message=why)])(
                    scope, receive, send_status
                )
                return
            seen = 0

            async def limited_receive():
                nonlocal seen
                message = await receive()
                seen += len(message.get("body", b"")) if message["type"] == "http.request" else 0
                if seen > self.max_body_bytes:
                    raise HTTPException(413, f"request body over the limit of {self.max_body_bytes} bytes")
                return message

            await self.app(scope, limited_receive, send_status)
        finally:
            self.metrics.record_request(route, status[0], time.monotonic() - t0)
