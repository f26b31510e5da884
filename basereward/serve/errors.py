"""How the server fails: every error is a 4xx/5xx `ErrorResponse` whose message names the field. The guard (ASGI
middleware, `BodyGuard`) runs before any route: it checks the bearer token when the server has an API key (401),
answers 413 before a body over the limit is read, and 429 when the bodies and queued work of the requests in flight
would take the byte budget over its capacity. It also records each request's route, status and latency, because it
is the one place that sees every response, error answers included.

Retry-After comes with every answer that a retry can fix: 429 (busy) and 503 (not scored by the deadline); the RL
clients' retry helper (`basereward.rl.retry`) retries exactly those two."""

from __future__ import annotations

import hmac
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
from basereward.serve.service import Busy, ByteBudget, Overdue, ScoringFailed, Ticket, current_ticket

log = logging.getLogger("basereward.serve")
RETRY_AFTER = "1"  # seconds: what the RL clients' retry helper waits before trying again
OPEN_PATHS = frozenset({"/health"})  # answered without the API key: load balancers' and orchestrators' probes


def _encodable(text: str) -> str:
    """Messages quote the request (a path, a chat turn): whatever they hold must not make the answer itself fail to
    encode as UTF-8, a 500 in place of the 4xx being answered."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(
    code: int, errors: list[P.FieldError], type_: str = "invalid_request_error"
) -> JSONResponse:
    errors = [P.FieldError(field=_encodable(e.field), message=_encodable(e.message)) for e in errors]
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


# pydantic names a union's model branch by its class (`image_url.ImageURL.url`): not a field of the request
_MODEL_BRANCHES = frozenset(
    name for name, v in vars(P).items() if isinstance(v, type) and issubclass(v, P.BaseModel)
)


def field_path(loc) -> str:
    """pydantic's loc ('body', 'samples', 0, 'messages', ...) -> 'samples[0].messages'. Union-branch labels
    ('list[...]', 'str', 'ImageURL') are dropped and a discriminator tag repeated by its field name is kept once."""
    out: list[str] = []
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif (
            "[" in part
            or part in ("str", "int", "float", "bool", "none", "list", "dict")
            or part in _MODEL_BRANCHES
        ):
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
    resp.headers["Retry-After"] = RETRY_AFTER
    return resp


async def _overdue(_request, exc: Overdue):
    resp = error_response(503, [P.FieldError(field="body", message=f"timed out: {exc}")], "server_error")
    resp.headers["Retry-After"] = RETRY_AFTER
    return resp


async def _http_error(_request, exc: HTTPException):
    field = "body" if exc.status_code in (400, 413, 429) else "path"
    type_ = "rate_limit_error" if exc.status_code == 429 else "invalid_request_error"
    resp = error_response(exc.status_code, [P.FieldError(field=field, message=str(exc.detail))], type_)
    resp.headers.update(getattr(exc, "headers", None) or {})  # Retry-After of a 429 raised mid-body
    return resp


async def _scoring_failed(_request, exc: ScoringFailed):
    log.error("scoring failed on %s: %s", exc.field, exc.detail, exc_info=exc.__cause__)
    return error_response(500, [P.FieldError(field=exc.field, message=exc.detail)], "server_error")


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
        (Overdue, _overdue),
        (ScoringFailed, _scoring_failed),
        (HTTPException, _http_error),
        (Exception, _internal),
    ):
        app.add_exception_handler(exc_type, handler)


class BodyGuard:
    """ASGI middleware, in this order: the API key (`api_key`; `OPEN_PATHS` need none; 401 with
    `WWW-Authenticate: Bearer`), the body limit (`max_body_bytes`: 413, by Content-Length before reading, or while a
    chunked body streams in) and the byte budget (`budget`: a body counts against it from arrival to response; 429
    with Retry-After when full). Records every request's route, status and latency; paths outside `routes` are
    counted as "other" so that scanners probing random paths cannot grow the metrics' label sets."""

    def __init__(
        self,
        app,
        metrics: Metrics,
        max_body_bytes: int,
        routes: set[str],
        budget: ByteBudget | None = None,
        api_key: str | None = None,
    ):
        self.app, self.metrics, self.max_body_bytes, self.routes = app, metrics, max_body_bytes, routes
        self.budget = budget or ByteBudget(None)
        self.api_key = api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.monotonic(), [500]
        route = scope["path"] if scope["path"] in self.routes else "other"

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        ticket = Ticket(self.budget)
        token = current_ticket.set(ticket)
        try:
            headers = dict(scope.get("headers") or [])
            refusal = self._refusal(scope, headers, ticket)
            if refusal is not None:
                await refusal(scope, receive, send_status)
                return
            seen = 0
            counted = b"content-length" in headers  # already taken from the budget in full

            async def limited_receive():
                nonlocal seen
                message = await receive()
                n = len(message.get("body", b"")) if message["type"] == "http.request" else 0
                seen += n
                if seen > self.max_body_bytes:
                    raise HTTPException(413, f"request body over the limit of {self.max_body_bytes} bytes")
                if n and not counted and not ticket.take(n):
                    raise HTTPException(429, self._busy_detail(), headers={"Retry-After": RETRY_AFTER})
                return message

            await self.app(scope, limited_receive, send_status)
        finally:
            ticket.close()
            current_ticket.reset(token)
            self.metrics.record_request(route, status[0], time.monotonic() - t0)

    def _refusal(self, scope, headers: dict, ticket: Ticket) -> JSONResponse | None:
        """The answer to a request refused before its body is read, or None."""
        if self.api_key is not None and scope["path"] not in OPEN_PATHS:
            scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
            # compare_digest: the time taken does not tell how much of a guess was right (the scheme name is
            # case-insensitive, RFC 9110)
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.api_key):
                why = "missing or wrong API key (send Authorization: Bearer <key>)"
                resp = error_response(401, [P.FieldError(field="authorization", message=why)], "auth_error")
                resp.headers["WWW-Authenticate"] = "Bearer"
                return resp
        length = headers.get(b"content-length")
        if length is None:
            return None
        if not length.isdigit():
            return error_response(400, [P.FieldError(field="body", message="bad length")])
        if int(length) > self.max_body_bytes:
            why = f"request body over the limit of {self.max_body_bytes} bytes"
            return error_response(413, [P.FieldError(field="body", message=why)])
        if not ticket.take(int(length)):
            resp = error_response(
                429, [P.FieldError(field="body", message=self._busy_detail())], "rate_limit_error"
            )
            resp.headers["Retry-After"] = RETRY_AFTER
            return resp
        return None

    def _busy_detail(self) -> str:
        b = self.budget
        return (
            f"server busy: {b.used} bytes of requests in flight, the budget is {b.capacity} (--max-queue-mb)"
        )
