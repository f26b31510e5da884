"""The native contract: `POST /v1/reward` (chat samples with images -> raw, normalized, prob) and `POST /v1/media`
(register a uid's images once, so later text-only requests naming the uid are scored with them)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from basereward.calibration import sigmoid
from basereward.serve import protocols as P
from basereward.serve.media import RequestError, image_ref
from basereward.serve.parse import BadRequest, Parsed, collect, sample_from_messages
from basereward.serve.routes_common import State
from basereward.types import DataError

router = APIRouter()


@router.post("/v1/reward", response_model=P.RewardResponse)
async def reward(req: P.RewardRequest, st: State):
    def parse():
        def one(i: int, s: P.RewardSample) -> Parsed:
            where = f"samples[{i}]"
            sample = sample_from_messages(s.messages, s.images, s.videos, where, st.policy, s.uid)
            return Parsed(sample, where, s.uid, s.group)

        return collect(req.samples, one)

    service = st.service
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
        results=results, model=service.model_name, revision=service.revision, timing=P.Timing(**scored.timing)
    )


@router.post("/v1/media", response_model=P.MediaResponse)
async def media(req: P.MediaRequest, st: State):
    policy = st.policy

    def check():
        if len(req.images) > policy.max_images:
            why = f"{len(req.images)} images, over the limit of {policy.max_images}"
            raise BadRequest([RequestError("images", why)])
        refs = [image_ref(src, f"images[{k}]", policy) for k, src in enumerate(req.images)]
        errors = []
        for k, ref in enumerate(refs):  # decode now: a bad image fails here, not in a later reward request
            try:
                ref.load(max_pixels=policy.max_image_pixels)
            except DataError as e:
                errors.append(RequestError(f"images[{k}]", str(e).split(": ", 1)[-1]))
        if errors:
            raise BadRequest(errors)
        return refs

    # Decoding images is CPU work: off the event loop, like every other route's parsing.
    refs = await asyncio.get_running_loop().run_in_executor(None, check)
    st.service.media.put(req.uid, refs)
    return P.MediaResponse(uid=req.uid, images=len(refs), registered=len(st.service.media))
