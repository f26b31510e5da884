"""An OpenRLHF remote reward-function file that gives BaseReward the images.

    basereward serve --model runs/demo/train/final --port 8000 &
    BASEREWARD_URL=http://127.0.0.1:8000 python -m openrlhf.cli.train_ppo_ray ... \
        --reward.remote_url $(python -c "import basereward.rl.openrlhf as m; print(m.__file__)") \
        --data.label_key label          # (<= v0.9: --remote_rm_url, --label_key)

OpenRLHF imports this file and calls `reward_func(queries, prompts, labels, **kw)` with decoded text only. Each
label carries what the reward needs, written at data-prep time as an object or its JSON string:
`{"gt": "<answer>", "images": ["<data URI | path under the server's --image-root>"], "uid": "..."}`; a plain
string label is the ground truth alone. Completions matching `gt` get 1 (the rule); the others are sent, with
their images, to the server's OpenRLHF route and get sigmoid(raw). Only the standard library is used for HTTP
(urllib; retries on 429/503 and refused connections: `basereward.rl.retry`, standard library only too).
Settings: BASEREWARD_URL (required), BASEREWARD_MATCHER (exact | normalized | choice), BASEREWARD_MODE
(hybrid | prob | raw | rule), BASEREWARD_TIMEOUT_S.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from basereward.rl.retry import Reply, with_retries
from basereward.rl.rewards import hybrid_scores

_ASSISTANT = "<|im_start|>assistant\n"
_TAIL_TOKENS = ("<|endoftext|>", "<|im_end|>")


def _label(label) -> dict:
    """A label as {"gt", "images", "uid"}: objects as they are, JSON-object strings decoded, anything else = gt."""
    if isinstance(label, str) and label.lstrip().startswith("{"):
        try:
            label = json.loads(label)
        except json.JSONDecodeError:
            pass
    return label if isinstance(label, dict) else {"gt": label}


def response_text(query: str, prompt: str | None = None) -> str:
    """The response part of a decoded query: after the prompt text, or after the last assistant header."""
    if prompt and query.startswith(prompt):
        text = query[len(prompt) :]
    else:
        text = query.rsplit(_ASSISTANT, 1)[-1]
    changed = True
    while changed:
        changed = False
        for tok in _TAIL_TOKENS:
            if text.rstrip("\n").endswith(tok):
                text, changed = text.rstrip("\n")[: -len(tok)], True
    return text


def _post(url: str, body: dict, timeout: float, retries: int = 5) -> dict:
    data = json.dumps(body).encode()

    def send() -> Reply:
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Reply(r.status, r.read(), r.headers.get("Retry-After"))
        # urllib raises on every non-2xx: an answer, not a transport failure
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.read(), e.headers.get("Retry-After"))

    # URLError (refused, DNS) and socket timeouts are all OSErrors: the transient failures worth retrying.
    return json.loads(with_retries(send, url, retries=retries, transient=(OSError,)).body)


def reward_func(queries, prompts, labels, **kwargs) -> dict:
    """OpenRLHF's remote reward-function contract: -> {"rewards", "scores", "extra_logs"} (torch tensors)."""
    url = os.environ.get("BASEREWARD_URL", "").rstrip("/")
    if not url:
        raise RuntimeError("set BASEREWARD_URL to a running `basereward serve` (e.g. http://127.0.0.1:8000)")
    endpoint = url if url.endswith("/get_reward") else url + "/get_reward"
    timeout = float(os.environ.get("BASEREWARD_TIMEOUT_S", "170"))
    queries, prompts = list(queries), list(prompts) if prompts is not None else [None] * len(queries)
    meta = [_label(x) for x in (labels if labels is not None else [None] * len(queries))]

    def raw_fn(idx: list[int]) -> list[float]:
        body = {
            "query": [queries[i] for i in idx],
            "prompts": [prompts[i] or "" for i in idx],
            "labels": [meta[i].get("gt") for i in idx],
            "images": [meta[i].get("images") or [] for i in idx],
            "uids": [None if meta[i].get("uid") is None else str(meta[i]["uid"]) for i in idx],
        }
        return _post(endpoint, body, timeout)["rewards"]

    responses = [response_text(q, p) for q, p in zip(queries, prompts)]
    truths = [m.get("gt") for m in meta]
    scores = hybrid_scores(
        responses,
        truths,
        raw_fn,
        os.environ.get("BASEREWARD_MATCHER", "normalized"),
        os.environ.get("BASEREWARD_MODE", "hybrid"),
    )
    rewards = [s.score for s in scores]
    logs = {"basereward_match": [float(s.match) for s in scores], "basereward_prob": [s.prob for s in scores]}
    try:
        import torch
    except ImportError:  # the contract wants tensors; lists still work for callers that convert
        return {"rewards": rewards, "scores": rewards, "extra_logs": logs}
    return {
        "rewards": torch.tensor(rewards),
        "scores": torch.tensor(rewards),
        "extra_logs": {k: torch.tensor(v) for k, v in logs.items()},
    }
