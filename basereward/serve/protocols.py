"""The wire formats: one pydantic model per client contract of docs/server-api.md, requests and responses.

Requests ignore unknown fields (clients add options across versions: `truncate_prompt_tokens`, `priority`, ...) but
validate the types of the fields they use, so a wrong type is a 422 naming the field. Scores default to the raw
Bradley-Terry logit everywhere; a sigmoid is applied only when the request asks (`use_activation`, `return`).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# JSON may escape a lone surrogate (\udc80), which no UTF-8 text holds: the tokenizer, the file system and the
# response encoder would each fail on it with a 500, so every string a request carries refuses it (a 422 naming the
# field).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _valid_unicode(s: str) -> str:
    bad = _SURROGATE.search(s)
    if bad is not None:
        raise ValueError(
            f"not valid Unicode: a lone surrogate (U+{ord(bad.group()):04X}) at character {bad.start()}"
        )
    return s


Text = Annotated[str, AfterValidator(_valid_unicode)]
TokenIds = list[int]
TextOrTokens = Text | list[Text] | TokenIds | list[TokenIds]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


# ---- chat messages (OpenAI content parts) ---------------------------------------------------------------------


class TextPart(_Request):
    """`{"type": "text", "text": "..."}`."""

    type: Literal["text"]
    text: Text


class ImageURL(_Request):
    url: Text  # data:image/...;base64,..., a path under the server's --image-root, or an allow-listed http(s) URL
    # accepted for OpenAI compatibility; the processor's pixel bounds decide resolution
    detail: Text | None = None


class ImageURLPart(_Request):
    """`{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}` (a bare string url is accepted)."""

    type: Literal["image_url"]
    image_url: ImageURL | Text


class ImagePart(_Request):
    """`{"type": "image", "image": "<url | path | base64>"}`; without `image` it is a placeholder filled, in order,
    from the sample's `images` list."""

    type: Literal["image"]
    image: Text | None = None


class VideoPart(_Request):
    """`{"type": "video", "video": ["<frame>", ...]}`: a video as its frames (each like an image source); without
    `video` it is a placeholder filled from the sample's `videos` list."""

    type: Literal["video"]
    video: list[Text] | None = None


class VideoURLPart(_Request):
    """vLLM's `video_url` part. Accepted by the schema only to answer with a clear 422: send frames instead."""

    type: Literal["video_url"]
    video_url: dict[str, Any] | Text


ContentPart = Annotated[
    TextPart | ImageURLPart | ImagePart | VideoPart | VideoURLPart, Field(discriminator="type")
]


class ChatMessage(_Request):
    """One turn. A string content may hold literal `<image>` / `<video>` tags (the unified-record convention), each
    filled in order from the sample's `images` / `videos`."""

    role: Literal["system", "user", "assistant"]
    content: Text | list[ContentPart]


# ---- native: POST /v1/reward ----------------------------------------------------------------------------------


class RewardSample(_Request):
    """One prompt and one response to score: the last message is the assistant response."""

    uid: Text | None = None  # echoed back; lets RL clients join results to rollouts
    messages: list[ChatMessage] = Field(min_length=1)
    # url | path | base64, filling image placeholders in order
    images: list[Text] = Field(default_factory=list)
    # each video as its frames, filling video placeholders
    videos: list[list[Text]] = Field(default_factory=list)
    group: Text | None = None  # GRPO group id: samples of one group are scored side by side


class RewardRequest(_Request):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model: Text | None = None
    samples: list[RewardSample] = Field(min_length=1)
    return_: list[Literal["raw", "normalized", "prob"]] = Field(
        default_factory=lambda: ["raw"], alias="return"
    )
    normalize: bool = False  # same as adding "normalized" to `return`


class RewardResult(BaseModel):
    """Scores of one sample. `raw` is always filled; `normalized` and `prob` when asked for, else null."""

    uid: str | None = None
    raw: float  # Bradley-Terry logit from the MLP head
    normalized: float | None = None  # (raw - mean) / std with the checkpoint's validation statistics
    prob: float | None = None  # sigmoid(raw)


class Timing(BaseModel):
    queue_ms: float  # waiting for a batch slot (includes the batcher's max wait)
    preprocess_ms: float  # decoding images, chat template, tokenising
    forward_ms: float  # model forward of the batch(es) this request rode in


class RewardResponse(BaseModel):
    results: list[RewardResult]  # request order
    model: str
    revision: str
    timing: Timing


# ---- OpenRLHF: POST /get_reward -------------------------------------------------------------------------------


class GetRewardRequest(_Request):
    """OpenRLHF's remote RM request; `images` and `uids` are basereward's backward-compatible extensions. A label
    may also be an object `{"gt": ..., "images": [...], "uid": ...}`."""

    query: list[Text] = Field(min_length=1)  # decoded prompt + response, special tokens kept
    prompts: list[Text] | None = None  # decoded prompts (used to split query when it carries no chat markup)
    labels: list[Any] | None = None
    images: list[list[Text] | None] | None = None  # per query: image sources for its image placeholders
    uids: list[Text | None] | None = None


class GetRewardResponse(BaseModel):
    rewards: list[float]  # raw logits: OpenRLHF's advantages read these
    scores: list[float]  # sigmoid(raw), in [0, 1] for dynamic filtering
    extra_logs: dict[str, list[float]]  # logged by OpenRLHF (wandb): raw, normalized, prob


class MediaRequest(_Request):
    """basereward's `uid -> media` registry: register a prompt's images once, then send text-only requests with
    the uid (OpenRLHF `uids` or `labels[i].uid`)."""

    uid: Text = Field(min_length=1)
    images: list[Text] = Field(min_length=1)  # data URIs, or paths / URLs where the server allows them


class MediaResponse(BaseModel):
    uid: str
    images: int  # images registered for this uid
    registered: int  # uids held by the server


# ---- vLLM / verl: POST /classify, /v1/classify, /pooling ------------------------------------------------------


class ClassifyRequest(_Request):
    """vLLM's classify request. Exactly one of `input` (text, texts, token ids) or `messages` (chat with image
    parts). `use_activation` (or the legacy `activation`) true returns sigmoid(raw); the default is raw."""

    model: Text | None = None
    input: TextOrTokens | None = None
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    use_activation: bool | None = None
    activation: bool | None = None  # verl before vLLM 0.11.2; `use_activation` wins when both are given


class PoolingRequest(ClassifyRequest):
    task: Text | None = None  # "classify" (the only pooling task a reward model has); others are a 422


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int
    completion_tokens: int = 0


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class ClassifyData(BaseModel):
    index: int
    label: str = "LABEL_0"
    probs: list[float]  # [score]; verl reads data[-1].probs[-1]
    num_classes: int = 1


class ClassifyResponse(BaseModel):
    id: str = Field(default_factory=lambda: _new_id("classify"))
    object: str = "list"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    data: list[ClassifyData]
    usage: Usage


class PoolingData(BaseModel):
    index: int
    object: str = "pooling"
    data: list[float]  # [score]


class PoolingResponse(BaseModel):
    id: str = Field(default_factory=lambda: _new_id("pool"))
    object: str = "list"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    data: list[PoolingData]
    usage: Usage


# ---- SGLang / verl: POST /v1/embeddings -----------------------------------------------------------------------


class EmbeddingRequest(_Request):
    """OpenAI embeddings request; the "embedding" is the 1-element raw score, never L2-normalised."""

    model: Text | None = None
    input: TextOrTokens
    encoding_format: Literal["float"] = "float"


class EmbeddingData(BaseModel):
    object: str = "embedding"
    index: int
    embedding: list[float]  # [raw score]; verl reads data[-1].embedding[-1]


class EmbeddingResponse(BaseModel):
    object: str = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


# ---- LLaMA-Factory: POST /v1/score/evaluation ------------------------------------------------------------------


class ScoreEvaluationRequest(_Request):
    model: Text | None = None
    messages: list[str] = Field(min_length=1)  # decoded prompt + response strings
    max_length: int | None = None  # inputs longer than this are a 422 (never silently truncated)


class ScoreEvaluationResponse(BaseModel):
    id: str = Field(default_factory=lambda: _new_id("scoreval"))
    object: str = "score.evaluation"
    model: str
    scores: list[float]  # raw logits


# ---- GET routes and errors -------------------------------------------------------------------------------------


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    created: int
    owned_by: str = "basereward"
    root: str  # the checkpoint directory
    max_model_len: int


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: str = "ok"
    model: str
    revision: str  # hash of the head weights and basereward.json: changes when the served reward changes
    model_type: str
    head: dict[str, Any]  # the checkpoint's head config (layers, activation, ...)
    reward_stats: dict[str, Any] | None  # validation mean/std used by `normalized`
    dtype: str
    device: str
    max_batch_size: int
    max_batch_tokens: int | None = None
    max_wait_ms: float
    models: list[
        dict[str, Any]
    ] = []  # every served model: role (main / ensemble / text), dir, revision, stats


class FieldError(BaseModel):
    field: str  # dotted path into the request body, e.g. "samples[1].messages[0].content[2].image_url.url"
    message: str


class ErrorBody(BaseModel):
    message: str
    type: str = "invalid_request_error"
    param: str | None = None  # the first offending field
    code: int


class ErrorResponse(BaseModel):
    """Every 4xx: the OpenAI-style `error` object plus one entry per offending field."""

    error: ErrorBody
    errors: list[FieldError]
