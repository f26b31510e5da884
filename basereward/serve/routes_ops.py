"""Operations: `GET /health` (what is served: every model, its revision and the batching limits),
`GET /v1/models` (the OpenAI-style model list clients probe) and `GET /metrics` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from basereward.serve import protocols as P
from basereward.serve.metrics import CONTENT_TYPE
from basereward.serve.routes_common import State

router = APIRouter()


@router.get("/health", response_model=P.Health)
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


@router.get("/metrics")
async def metrics(st: State):
    return Response(st.service.metrics.render(), media_type=CONTENT_TYPE)
