"""Scorers the RL adapters call: the in-process `RewardScorer`, or `HttpScorer` for a running `basereward serve`.

Both are `scorer(samples) -> [[raw reward per response] per sample]`, so an adapter does not care where the model
runs. `HttpScorer` sends the native `POST /v1/reward` request: each (prompt, response) becomes one sample whose
messages keep the unified convention (`<image>` tags in the text) and whose images travel as PNG/JPEG data URIs,
so the server rebuilds exactly the `Sample` the in-process scorer would see (same token ids, same images).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from basereward.rl.retry import Reply, with_retries
from basereward.types import ImageRef, Sample


def image_data_uri(ref: ImageRef) -> str:
    data = ref.data if ref.data is not None else Path(ref.path).read_bytes()
    mime = "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def native_samples(sample: Sample, group: str | None = None, uid: str | None = None) -> list[dict]:
    """One `/v1/reward` sample per response of `sample` (they share the group: the same prompt and images)."""
    images = [image_data_uri(ref) for ref in sample.images]
    if sample.videos:
        raise ValueError("HttpScorer sends images only; score videos in-process")
    out = []
    for r in sample.responses:
        msg = {"messages": [*sample.prompt, {"role": "assistant", "content": r}], "images": images}
        if group is not None:
            msg["group"] = group
        if uid is not None:
            msg["uid"] = uid
        out.append(msg)
    return out


class HttpScorer:
    """Scores through a reward server's native route; 429/503 answers and connection failures are retried
    (`basereward.rl.retry`), `retries` times at most."""

    def __init__(self, url: str, *, timeout_s: float = 170.0, retries: int = 3):
        url = url.rstrip("/")
        self.url = url if url.endswith("/v1/reward") else url + "/v1/reward"
        self.timeout_s = timeout_s
        self.retries = retries

    def __call__(self, samples: Sequence[Sample], progress: bool = False) -> list[list[float]]:
        import httpx

        body, sizes = [], []
        for i, s in enumerate(samples):
            part = native_samples(s, group=f"g{i}")
            body += part
            sizes.append(len(part))
        if not body:
            return []
        payload = {"samples": body, "return": ["raw"]}

        def send() -> Reply:
            r = httpx.post(self.url, json=payload, timeout=self.timeout_s)
            return Reply(r.status_code, r.content, r.headers.get("Retry-After"))

        reply = with_retries(send, self.url, retries=self.retries, transient=(httpx.TransportError,))
        raws = [res["raw"] for res in json.loads(reply.body)["results"]]
        out, k = [], 0
        for n in sizes:
            out.append(raws[k : k + n])
            k += n
        return out


@lru_cache(maxsize=4)
def _local_scorer(model_dir: str, device: str | None):
    from basereward.scoring import load_scorer

    return load_scorer(model_dir, device=device, progress=False)


def get_scorer(model: str | None = None, url: str | None = None, *, device: str | None = None):
    """An in-process scorer for a checkpoint directory (loaded once per process) or an HttpScorer for a URL."""
    if (model is None) == (url is None):
        raise ValueError("give exactly one of model (a checkpoint directory) or url (a basereward server)")
    return HttpScorer(url) if url is not None else _local_scorer(str(model), device)
