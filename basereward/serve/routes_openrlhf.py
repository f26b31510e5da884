"""OpenRLHF's remote reward model: `POST /get_reward` (and any extra paths given with `--get-reward-path`):
decoded `query` texts (+ `prompts`, `labels`, and per-query `images` or a registered `uids`) -> `rewards` (raw),
`scores` (sigmoid) and `extra_logs`."""

from __future__ import annotations

from fastapi import APIRouter

from basereward.calibration import sigmoid
from basereward.serve import protocols as P
from basereward.serve.parse import parse_get_reward
from basereward.serve.routes_common import State


async def get_reward(req: P.GetRewardRequest, st: State):
    service = st.service
    scored = await service.score(
        lambda: parse_get_reward(req, st.policy, st.strip_tokens, service.media), "/get_reward"
    )
    probs = [sigmoid(r) for r in scored.raw]
    logs = {"reward_raw": scored.raw, "reward_normalized": scored.normalized, "reward_prob": probs}
    return P.GetRewardResponse(rewards=scored.raw, scores=probs, extra_logs=logs)


def router(paths: tuple[str, ...] = ("/get_reward",)) -> APIRouter:
    """The route under every path given: OpenRLHF versions and forks post to different ones (`/get_reward`,
    `/reward`...), all with the same body. Samples are counted under "/get_reward" whatever the path."""
    r = APIRouter()
    for path in paths:
        r.add_api_route(path, get_reward, methods=["POST"], response_model=P.GetRewardResponse)
    return r
