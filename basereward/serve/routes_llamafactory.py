"""LLaMA-Factory PPO's API reward model (`reward_model_type: api`): `POST /v1/score/evaluation`, decoded texts in
`messages` -> one raw score each."""

from __future__ import annotations

from fastapi import APIRouter

from basereward.serve import protocols as P
from basereward.serve.media import RequestError
from basereward.serve.parse import BadRequest, collect
from basereward.serve.routes_common import State

router = APIRouter()


@router.post("/v1/score/evaluation", response_model=P.ScoreEvaluationResponse)
async def score_evaluation(req: P.ScoreEvaluationRequest, st: State):
    def parse():
        return collect(req.messages, lambda i, text: st.text_sample(text, f"messages[{i}]"))

    scored = await st.service.score(parse, "/v1/score/evaluation")
    # The client's max_length is checked on the tokens actually scored, so it can only be known after encoding.
    if req.max_length is not None:
        over = [
            RequestError(p.field, f"input is {n} tokens, over max_length {req.max_length}")
            for p, n in zip(scored.parsed, scored.tokens)
            if n > req.max_length
        ]
        if over:
            raise BadRequest(over)
    return P.ScoreEvaluationResponse(model=req.model or st.service.model_name, scores=scored.raw)
