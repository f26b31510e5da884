"""BaseReward as a verl custom reward function, with the images.

    custom_reward_function:
      path: <site-packages>/basereward/rl/verl.py     # or reward.custom_reward_function in newer verl
      name: compute_score
      reward_kwargs: {url: "http://127.0.0.1:8000", matcher: normalized}   # or {model: runs/demo/train/final}

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)` per rollout with the
decoded response only: no prompt and no images arrive. So they must be written into the parquet's `extra_info` at
data-prep time: `extra_info = {"prompt": <chat messages or text>, "images": [<path | bytes | data URI |
{"bytes","path"}>...], "uid": ...}` (`question` is accepted for the prompt). The result is a dict: `score` (the
hybrid reward: 1 if the response matches `ground_truth`, else sigmoid(BaseReward)) plus `raw`, `prob`, `match`,
logged by verl as reward_extra_info (`raw`/`prob` are NaN when the rule matched and the model was not consulted).
"""

from __future__ import annotations

import os

from basereward.rl.client import get_scorer
from basereward.rl.rewards import hybrid_scores
from basereward.rl.samples import image_ref, prompt_messages
from basereward.types import Sample


def verl_sample(solution_str: str, extra_info: dict | None) -> Sample:
    """The Sample verl's call describes: prompt and images from extra_info, the response as given."""
    info = extra_info or {}
    prompt = info.get("prompt", info.get("question"))
    if prompt is None:
        raise ValueError(
            "verl extra_info has no 'prompt' (or 'question'): write it there at data-prep time so the "
            "reward model sees what the policy was asked"
        )
    images = [
        image_ref(img, where=f"extra_info.images[{k}]") for k, img in enumerate(info.get("images") or [])
    ]
    uid = info.get("uid", info.get("index"))
    return Sample(
        prompt_messages(prompt, len(images)), [solution_str], images, id="" if uid is None else str(uid)
    )


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    """verl's custom reward function. kwargs (verl's `reward_kwargs`): `url` or `model` (else BASEREWARD_URL /
    BASEREWARD_MODEL), `matcher` (exact | normalized | choice), `mode` (hybrid | prob | raw | rule). verl's own
    extras (`reward_router_address`, `reward_model_tokenizer`, ...) are ignored."""
    url = kwargs.get("url") or os.environ.get("BASEREWARD_URL")
    model = kwargs.get("model") or os.environ.get("BASEREWARD_MODEL")
    sample = verl_sample(solution_str, extra_info)
    mode = kwargs.get("mode", "hybrid")

    def raw_fn(indices: list[int]) -> list[float]:
        scorer = get_scorer(None if url else model, url, device=kwargs.get("device"))
        return [r[0] for r in scorer([sample], progress=False)]

    s = hybrid_scores([solution_str], [ground_truth], raw_fn, kwargs.get("matcher", "normalized"), mode)[0]
    return {"score": s.score, "raw": s.raw, "prob": s.prob, "match": float(s.match)}
