"""The FastAPI app: every client contract of docs/server-api.md as a router over one `RewardService`.

    POST /v1/reward, /v1/media           native (routes_native.py)
    POST /get_reward (+ aliases)         OpenRLHF (routes_openrlhf.py)
    POST /classify, /v1/classify         vLLM / verl        \
    POST /pooling                        vLLM pooling        } routes_vllm.py
    POST /v1/embeddings                  SGLang / verl      /
    POST /v1/score/evaluation            LLaMA-Factory PPO (routes_llamafactory.py)
    GET  /health, /v1/models, /metrics   operations (routes_ops.py)

Scores are the raw logit unless the request asks for sigmoid (`use_activation`/`activation`, `return: ["prob"]`).
Every bad request is a 4xx `ErrorResponse` whose message names the field; the guard (errors.py) answers 401 without
the API key (when one is set; /health stays open), 413 before an oversized body is read and 429 when the byte budget
of requests in flight is full; a request not scored by its deadline is answered 503 (service.py).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from basereward.serve import protocols as P
from basereward.serve import routes_llamafactory, routes_native, routes_openrlhf, routes_ops, routes_vllm
from basereward.serve.errors import BodyGuard, install_error_handlers
from basereward.serve.routes_common import ServeState
from basereward.serve.service import RewardService

# Every answer but a 200 is an `ErrorResponse`: the OpenAPI schema says so (FastAPI would document a 422 of its own
# shape, which this app never sends, and none of the others), so that a client generated from /openapi.json, and
# the schema-driven fuzz test (tests/test_serve_fuzz.py), see the codes and body the server really answers with.
BODY_ERRORS = {
    400: "malformed JSON, or a Content-Length that is not a number",
    413: "body over --max-body-mb",
    422: "a field is invalid: `errors` names each one",
    429: "busy: the queue is full by count or by bytes (--max-queue-mb); retry after Retry-After",
    500: "scoring failed for a reason that is not the client's; `errors` names the sample",
    503: "not scored within --request-timeout-s; retry after Retry-After",
}
AUTH_ERROR = {401: "missing or wrong API key (Authorization: Bearer <key>)"}


def documented(errors: dict[int, str]) -> dict:
    return {code: {"model": P.ErrorResponse, "description": why} for code, why in errors.items()}


def create_app(
    service: RewardService,
    *,
    max_body_bytes: int = 64 * 1024 * 1024,
    get_reward_paths: tuple[str, ...] = ("/get_reward",),
    api_key: str | None = None,
) -> FastAPI:
    """The app over a (not yet started) service; the service starts and stops with the app's lifespan. With
    `api_key`, every route but /health needs `Authorization: Bearer <api_key>`."""

    @asynccontextmanager
    async def lifespan(_app):
        service.start()
        yield
        service.stop()

    app = FastAPI(title="basereward reward server", lifespan=lifespan)
    app.state.service = service
    app.state.serve = ServeState.of(service)
    auth = AUTH_ERROR if api_key else {}
    scoring = (
        routes_native.router,
        routes_openrlhf.router(get_reward_paths),
        routes_vllm.router,
        routes_llamafactory.router,
    )
    for router in scoring:
        app.include_router(router, responses=documented({**BODY_ERRORS, **auth}))
    app.include_router(routes_ops.router, responses=documented(auth))
    app.include_router(routes_ops.open_router)
    routers = (*scoring, routes_ops.router, routes_ops.open_router)
    install_error_handlers(app)
    # Metrics label requests by the paths this app serves (not FastAPI's docs pages, not whatever a client probes).
    served = {r.path for router in routers for r in router.routes if isinstance(r, APIRoute)}
    app.add_middleware(
        BodyGuard,
        metrics=service.metrics,
        max_body_bytes=max_body_bytes,
        routes=served,
        budget=service.queue_budget,
        api_key=api_key,
    )
    service.metrics.watch(
        queue_depth=lambda: sum(m.batcher.qsize() for m in service.all_members),
        max_batch_size=service.max_batch_size,
        max_batch_tokens=service.max_batch_tokens,
        queue_bytes=lambda: service.queue_budget.used,
        queue_budget_bytes=service.queue_budget.capacity,
        media_cache_bytes=lambda: service.media.bytes,
        media_cache_budget_bytes=service.media.max_bytes,
        media_cache_entries=lambda: len(service.media),
    )
    return app
