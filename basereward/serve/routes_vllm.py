"""The vLLM / SGLang-style routes verl and other clients call for a classification-style reward model:

    POST /classify, /v1/classify   input (text(s) or token ids) or messages -> data[i].probs = [score]
    POST /pooling                  vLLM pooling (task classify/score/reward) -> data[i].data = [score]
    POST /v1/embeddings            SGLang -> data[i].embedding = [raw score]

Scores are the raw logit unless the request asks for sigmoid (`use_activation`, or vLLM's older `activation`).
"""

from __future__ import annotations

from fastapi import APIRouter

from basereward.calibration import sigmoid
from basereward.serve import protocols as P
from basereward.serve.media import RequestError
from basereward.serve.parse import BadRequest
from basereward.serve.routes_common import State, usage

POOLING_TASKS = (None, "classify", "score", "reward")
router = APIRouter()


def activated(req: P.ClassifyRequest, scores: list[float]) -> list[float]:
    use = req.use_activation if req.use_activation is not None else bool(req.activation)
    return [sigmoid(s) for s in scores] if use else scores


@router.post("/classify", response_model=P.ClassifyResponse)
@router.post("/v1/classify", response_model=P.ClassifyResponse)
async def classify(req: P.ClassifyRequest, st: State):
    scored = await st.service.score(lambda: st.parse_inputs(req), "/classify")
    data = [P.ClassifyData(index=i, probs=[s]) for i, s in enumerate(activated(req, scored.raw))]
    return P.ClassifyResponse(model=req.model or st.service.model_name, data=data, usage=usage(scored))


@router.post("/pooling", response_model=P.PoolingResponse)
async def pooling(req: P.PoolingRequest, st: State):
    if req.task not in POOLING_TASKS:
        why = f"unsupported pooling task {req.task!r}; a reward model serves 'classify'"
        raise BadRequest([RequestError("task", why)])
    scored = await st.service.score(lambda: st.parse_inputs(req), "/pooling")
    data = [P.PoolingData(index=i, data=[s]) for i, s in enumerate(activated(req, scored.raw))]
    return P.PoolingResponse(model=req.model or st.service.model_name, data=data, usage=usage(scored))


@router.post("/v1/embeddings", response_model=P.EmbeddingResponse)
async def embeddings(req: P.EmbeddingRequest, st: State):
    # The "embedding" is the raw score as a 1-vector: never normalised (an L2 norm would make it +-1).
    scored = await st.service.score(lambda: st.parse_inputs(req), "/v1/embeddings")
    data = [P.EmbeddingData(index=i, embedding=[s]) for i, s in enumerate(scored.raw)]
    return P.EmbeddingResponse(data=data, model=req.model or st.service.model_name, usage=usage(scored))
