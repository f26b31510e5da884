"""The FastAPI app: every client contract of specs/server-api.md as a route over one `RewardService`.

    POST /v1/reward                      native: chat samples with images -> raw, normalized, prob
    POST /get_reward (+ aliases)         OpenRLHF: query/prompts/labels (+ images/uids) -> rewards/scores/extra_logs
    POST /classify, /v1/classify         vLLM / verl: input or messages -> data[i].probs = [score]
    POST /pooling                        vLLM pooling: data[i].data = [score]
    POST /v1/embeddings                  SGLang / verl: data[i].embedding = [raw score]
    POST /v1/score/evaluation            LLaMA-Factory PPO (reward_model_type: api)
    GET  /health, /v1/models, /metrics

Scores are the raw logit unless the request asks for sigmoid (`use_activation`/`activation`, `return: ["prob"]`).
Every bad request is a 4xx `ErrorResponse` whose message names the field; the body-size guard answers 413 before
the body is read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException

from basereward.scoring import RewardScorer
from basereward.serve import protocols as P
from basereward.serve.media import RequestError, image_ref
from basereward.serve.parse import (
    BadRequest,
    Parsed,
    collect,
    parse_get_reward,
    sample_from_messages,
    sample_from_text,
    texts_from_input,
)
from basereward.serve.service import Busy, RewardService
from basereward.types import DataError

log = logging.getLogger("basereward.serve")
POOLING_TASKS = (None, "classify", "score", "reward")


def create_app(
    service: RewardService,
    *,
    max_body_bytes: int = 64 * 1024 * 1024,
    get_reward_paths: tuple[str, ...] = ("/get_reward",),
) -> FastAPI:
    """The app over a (not yet started) service; the service starts and stops with the app's lifespan."""

    @asynccontextmanager
    async def lifespan(_app):
        service.start()
        yield
        service.stop()

    app = FastAPI(title="basereward reward server", lifespan=lifespan)
    app.state.service = service
    routes = {
        "/v1/reward",
        "/v1/media",
        "/classify",
        "/v1/classify",
        "/pooling",
        "/v1/embeddings",
        "/v1/score/evaluation",
        "/health",
        "/v1/models",
        "/metrics",
        *get_reward_paths,
    }
    app.add_middleware(BodyGuard, metrics=service.metrics, max_body_bytes=max_body_bytes, routes=routes)
    _install_error_handlers(app)
    policy, sigmoid = service.policy, RewardScorer.sigmoid
    tok = service.scorer.encoder.tokenizer
    strip_tokens = tuple(
        dict.fromkeys(t for t in ("<|endoftext|>", "<|im_end|>", tok.pad_token, tok.eos_token) if t)
    )

    @app.post("/v1/reward", response_model=P.RewardResponse)
    async def reward(req: P.RewardRequest):
        def parse():
            return collect(
                req.samples,
                lambda i, s: Parsed(
                    sample_from_messages(s.messages, s.images, s.videos, f"samples[{i}]", policy, s.uid),
                    f"samples[{i}]",
                    s.uid,
                    s.group,
                ),
            )

        scored = await service.score(parse, "/v1/reward")
        want = set(req.return_) | ({"normalized"} if req.normalize else set())
        results = [
            P.RewardResult(
                uid=p.uid,
                raw=r,
                normalized=n if "normalized" in want else None,
                prob=sigmoid(r) if "prob" in want else None,
            )
            for p, r, n in zip(scored.parsed, scored.raw, scored.normalized)
        ]
        return P.RewardResponse(
            results=results,
            model=service.model_name,
            revision=service.revision,
            timing=P.Timing(**scored.timing),
        )

    async def get_reward(req: P.GetRewardRequest):
        scored = await service.score(
            lambda: parse_get_reward(req, policy, strip_tokens, service.media), "/get_reward"
        )
        probs = [sigmoid(r) for r in scored.raw]
        logs = {"reward_raw": scored.raw, "reward_normalized": scored.normalized, "reward_prob": probs}
        return P.GetRewardResponse(rewards=scored.raw, scores=probs, extra_logs=logs)

    @app.post("/v1/media", response_model=P.MediaResponse)
    async def media(req: P.MediaRequest):
        def check():
            if len(req.images) > policy.max_images:
                raise BadRequest(
                    [
                        RequestError(
                            "images", f"{len(req.images)} images, over the limit of {policy.max_images}"
                        )
                    ]
                )
            refs = [image_ref(src, f"images[{k}]", policy) for k, src in enumerate(req.images)]
            errors = []
            for k, ref in enumerate(
                refs
            ):  # decode now: a bad image fails here, not in a later reward request
                try:
                    ref.load(max_pixels=policy.max_image_pixels)
                except DataError as e:
                    errors.append(RequestError(f"images[{k}]", str(e).split(": ", 1)[-1]))
            if errors:
                raise BadRequest(errors)
            return refs

        refs = await asyncio.get_running_loop().run_in_executor(None, check)
        service.media.put(req.uid, refs)
        return P.MediaResponse(uid=req.uid, images=len(refs), registered=len(service.media))

    for path in get_reward_paths:
        app.post(path, response_model=P.GetRewardResponse)(get_reward)

    def parse_inputs(req: P.ClassifyRequest | P.EmbeddingRequest):
        messages = getattr(req, "messages", None)
        if (req.input is None) == (messages is None):
            raise BadRequest([RequestError("input", "send exactly one of `input` or `messages`")])
        if messages is not None:
            return [Parsed(sample_from_messages(messages, [], [], "", policy), "messages")]
        texts = texts_from_input(req.input, "input", tok)
        return collect(
            texts,
            lambda i, ft: Parsed(sample_from_text(ft[1], ft[0], policy, strip_tokens=strip_tokens), ft[0]),
        )

    def activated(req: P.ClassifyRequest, scores: list[float]) -> list[float]:
        use = req.use_activation if req.use_activation is not None else bool(req.activation)
        return [sigmoid(s) for s in scores] if use else scores

    def usage(scored) -> P.Usage:
        n = sum(scored.tokens)
        return P.Usage(prompt_tokens=n, total_tokens=n)

    async def classify(req: P.ClassifyRequest):
        scored = await service.score(lambda: parse_inputs(req), "/classify")
        data = [P.ClassifyData(index=i, probs=[s]) for i, s in enumerate(activated(req, scored.raw))]
        return P.ClassifyResponse(model=req.model or service.model_name, data=data, usage=usage(scored))

    for path in ("/classify", "/v1/classify"):
        app.post(path, response_model=P.ClassifyResponse)(classify)

    @app.post("/pooling", response_model=P.PoolingResponse)
    async def pooling(req: P.PoolingRequest):
        if req.task not in POOLING_TASKS:
            raise BadRequest(
                [
                    RequestError(
                        "task", f"unsupported pooling task {req.task!r}; a reward model serves 'classify'"
                    )
                ]
            )
        scored = await service.score(lambda: parse_inputs(req), "/pooling")
        data = [P.PoolingData(index=i, data=[s]) for i, s in enumerate(activated(req, scored.raw))]
        return P.PoolingResponse(model=req.model or service.model_name, data=data, usage=usage(scored))

    @app.post("/v1/embeddings", response_model=P.EmbeddingResponse)
    async def embeddings(req: P.EmbeddingRequest):
        # The "embedding" is the raw score as a 1-vector: never normalised (an L2 norm would make it +-1).
        scored = await service.score(lambda: parse_inputs(req), "/v1/embeddings")
        data = [P.EmbeddingData(index=i, embedding=[s]) for i, s in enumerate(scored.raw)]
        return P.EmbeddingResponse(data=data, model=req.model or service.model_name, usage=usage(scored))

    @app.post("/v1/score/evaluation", response_model=P.ScoreEvaluationResponse)
    async def score_evaluation(req: P.ScoreEvaluationRequest):
        def parse():
            return collect(
                req.messages,
                lambda i, t: Parsed(
                    sample_from_text(t, f"messages[{i}]", policy, strip_tokens=strip_tokens), f"messages[{i}]"
                ),
            )

        scored = await service.score(parse, "/v1/score/evaluation")
        if req.max_length is not None:
            over = [
                RequestError(p.field, f"input is {n} tokens, over max_length {req.max_length}")
                for p, n in zip(scored.parsed, scored.tokens)
                if n > req.max_length
            ]
            if over:
                raise BadRequest(over)
        return P.ScoreEvaluationResponse(model=req.model or service.model_name, scores=scored.raw)

    @app.get("/health", response_model=P.Health)
    async def health():
        m = service.scorer.model
        return P.Health(
            model=service.model_name,
            revision=service.revision,
            model_type=m.model_type,
            head=m.head.cfg.to_dict(),
            reward_stats=m.reward_stats,
            dtype=service.dtype,
            device=service.device,
            max_batch_size=service.max_batch_size,
            max_batch_tokens=service.max_batch_tokens,
            models=[m.describe() for m in service.all_members],
            max_wait_ms=service.max_wait_ms,
        )

    @app.get("/v1/models", response_model=P.ModelList)
    async def models():
        card = P.ModelCard(
            id=service.model_name,
            created=int(service.model_dir.stat().st_mtime),
            root=str(service.model_dir),
            max_model_len=service.max_tokens,
        )
        return P.ModelList(data=[card])

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        depth = sum(m.batcher.qsize() for m in service.all_members)
        gauges = {
            "basereward_queue_depth": ("requests waiting for the batchers", depth),
            "basereward_max_batch_size": ("configured max sequences per forward", service.max_batch_size),
            "basereward_max_batch_tokens": (
                "configured max tokens per forward (0: none)",
                service.max_batch_tokens or 0,
            ),
        }
        return PlainTextResponse(service.metrics.render(gauges), media_type="text/plain; version=0.0.4")

    return app


# ---- errors ------------------------------------------------------------------------------------------------------


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


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_request, exc: RequestValidationError):
        errs = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errs):
            e = errs[0]
            return error_response(
                400,
                [
                    P.FieldError(
                        field="body",
                        message=f"malformed JSON: {e.get('msg')} (at {e.get('loc', ['', '?'])[-1]})",
                    )
                ],
            )
        seen, fields = set(), []
        for e in errs:
            fe = P.FieldError(field=field_path(e.get("loc", ())), message=str(e.get("msg", "invalid")))
            if (fe.field, fe.message) not in seen:
                seen.add((fe.field, fe.message))
                fields.append(fe)
        return error_response(422, fields or [P.FieldError(field="body", message="invalid request")])

    @app.exception_handler(BadRequest)
    async def bad_request(_request, exc: BadRequest):
        return error_response(422, [P.FieldError(field=e.field, message=e.detail) for e in exc.errors])

    @app.exception_handler(RequestError)
    async def request_error(_request, exc: RequestError):
        return error_response(422, [P.FieldError(field=exc.field, message=exc.detail)])

    @app.exception_handler(Busy)
    async def busy(_request, exc: Busy):
        resp = error_response(
            429, [P.FieldError(field="body", message=f"server busy: {exc}")], "rate_limit_error"
        )
        resp.headers["Retry-After"] = "1"
        return resp

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc: HTTPException):
        field = "body" if exc.status_code in (400, 413) else "path"
        return error_response(exc.status_code, [P.FieldError(field=field, message=str(exc.detail))])

    @app.exception_handler(Exception)
    async def internal(_request, exc: Exception):
        log.exception("internal error")
        return error_response(
            500, [P.FieldError(field="server", message=f"{type(exc).__name__}")], "server_error"
        )


class BodyGuard:
    """ASGI middleware: refuses bodies over `max_body_bytes` (413, by Content-Length before reading, or while a
    chunked body streams in) and records every request's route, status and latency."""

    def __init__(self, app, metrics, max_body_bytes: int, routes: set[str]):
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
