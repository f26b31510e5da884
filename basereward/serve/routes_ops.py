"""Operations: `GET /health` (what is served: every model, its revision and the batching limits),
`GET /v1/models` (the OpenAI-style model list clients probe) and `GET /metrics` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from basereward.serve import protocols as P
from basereward.serve.metrics import CONTENT_TYPE
from basereward.serve.routes_common import State

router = APIRouter()  # behind the API key when the server has one
open_router = APIRouter()  # never behind it (errors.OPEN_PATHS)


@open_router.get("/health", response_model=P.Health)
async def health(st: State):
    service = st.service
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
        models=[member.describe() for member in service.all_members],
        max_wait_ms=service.max_wait_ms,
    )


@router.get("/v1/models", response_model=P.ModelList)
async def models(st: State):
    service = st.service
    card = P.ModelCard(
        id=service.model_name,
        created=int(service.model_dir.stat().st_mtime),
        root=str(service.model_dir),
        max_model_len=service.max_tokens,
    )
    return P.ModelList(data=[card])


# The schema documents the 200 as text (the exposition format), while the errors keep their JSON bodies.
METRICS_200 = {
    "description": "Prometheus text exposition",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}


@router.get("/metrics", response_class=Response, responses={200: METRICS_200})
async def metrics(st: State):
    return Response(st.service.metrics.render(), media_type=CONTENT_TYPE)
