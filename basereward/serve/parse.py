"""Requests -> `Sample`s in the unified convention (prompt messages with one `<image>` tag per image, images as
`ImageRef`s, one response). Every route goes through one of two converters, so all of them feed the one
preprocessing path (`basereward.template`) the same sample for the same content:

- `sample_from_messages`: OpenAI-style chat (native `/v1/reward`, `/classify` with `messages`). The last message is
  the assistant response; `image_url` / `image` / `video` parts and `<image>` tags become the sample's images.
- `sample_from_text`: decoded chat text (OpenRLHF `query`, vLLM/SGLang `input`, LLaMA-Factory `messages`). Leading
  pads and trailing pad/EOS tokens are stripped (the encoder re-appends the one `<|im_end|>` that is scored), each
  `<|vision_start|><|image_pad|>...<|vision_end|>` run collapses to one `<image>` slot, and the ChatML turns are
  read back into messages. A text with image slots and no images is refused: it is never scored as text-only.

Errors are `RequestError`s naming the request field; `collect` gathers them per sample into one `BadRequest`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from basereward.serve.media import MediaPolicy, RequestError, image_ref
from basereward.serve.protocols import ChatMessage, GetRewardRequest
from basereward.types import IMAGE_TAG, VIDEO_TAG, DataError, ImageRef, Sample, VideoRef

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
_STRIP_TOKENS = ("<|endoftext|>", IM_END)
_VISION_RUN = re.compile(
    r"<\|vision_start\|>(?:(?P<img>(?:<\|image_pad\|>)+)|(?:<\|video_pad\|>)+)<\|vision_end\|>"
)
_TAG = re.compile(f"{re.escape(IMAGE_TAG)}|{re.escape(VIDEO_TAG)}")
ROLES = ("system", "user", "assistant")
T = TypeVar("T")


@dataclass
class Parsed:
    """One sample to score and where it came from in the request."""

    sample: Sample
    field: str  # "samples[3]", "query[0]", "input[2]": prefix of this sample's error messages
    uid: str | None = None
    group: str | None = None


class BadRequest(DataError):
    """One or more `RequestError`s of one request, reported together (a 4xx listing each field)."""

    def __init__(self, errors: list[RequestError]):
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


def collect(items: Iterable[T], convert: Callable[[int, T], Parsed]) -> list[Parsed]:
    """Convert every item; gather all RequestErrors instead of stopping at the first one."""
    out, errors = [], []
    for i, item in enumerate(items):
        try:
            out.append(convert(i, item))
        except BadRequest as e:
            errors.extend(e.errors)
        except RequestError as e:
            errors.append(e)
    if errors:
        raise BadRequest(errors)
    return out


# ---- chat messages --------------------------------------------------------------------------------------------


def sample_from_messages(
    messages: list[ChatMessage],
    images: list[str],
    videos: list[list[str]],
    field: str,
    policy: MediaPolicy,
    uid: str | None = None,
) -> Sample:
    """OpenAI-style chat whose last message is the assistant response -> a one-response Sample."""
    if not messages:
        raise RequestError(_at(field, "messages"), "missing response: no messages")
    last = len(messages) - 1
    if messages[last].role != "assistant":
        raise RequestError(
            _at(field, "messages"), "missing response: the last message must be the assistant turn"
        )
    if last == 0:  # the chat template cannot render an empty prompt (an IndexError, a 500, before this check)
        raise RequestError(_at(field, "messages"), "missing prompt: no message before the assistant response")
    response = _response_text(messages[last], _at(field, f"messages[{last}].content"))
    prompt: list[dict] = []
    slots: list[ImageRef | None] = []  # None: a placeholder filled from `images`
    vslots: list[VideoRef | None] = []
    for mi, m in enumerate(messages[:last]):
        where = _at(field, f"messages[{mi}].content")
        if isinstance(m.content, str):
            for tag in _TAG.findall(m.content):
                (slots if tag == IMAGE_TAG else vslots).append(None)
            prompt.append({"role": m.role, "content": m.content})
            continue
        pieces = []
        for pi, part in enumerate(m.content):
            pf = f"{where}[{pi}]"
            if part.type == "text":
                for tag in _TAG.findall(part.text):
                    (slots if tag == IMAGE_TAG else vslots).append(None)
                pieces.append(part.text)
            elif part.type == "image_url":
                url = part.image_url if isinstance(part.image_url, str) else part.image_url.url
                sub = ".image_url" if isinstance(part.image_url, str) else ".image_url.url"
                slots.append(image_ref(url, pf + sub, policy))
                pieces.append(IMAGE_TAG)
            elif part.type == "image":
                slots.append(image_ref(part.image, pf + ".image", policy) if part.image is not None else None)
                pieces.append(IMAGE_TAG)
            elif part.type == "video":
                vslots.append(_video(part.video, pf + ".video", policy) if part.video is not None else None)
                pieces.append(VIDEO_TAG)
            else:
                raise RequestError(
                    pf, "video_url is not supported: send the video as frames ({'type': 'video'})"
                )
        prompt.append({"role": m.role, "content": "".join(pieces)})
    refs = _fill(
        slots,
        [image_ref(s, _at(field, f"images[{k}]"), policy) for k, s in enumerate(images)],
        _at(field, "images"),
        "image",
    )
    vids = _fill(
        vslots,
        [_video(v, _at(field, f"videos[{k}]"), policy) for k, v in enumerate(videos)],
        _at(field, "videos"),
        "video",
    )
    if refs and not slots:
        prompt = _prepend_tags(prompt, len(refs), _at(field, "messages"))
    if videos and not vslots:
        raise RequestError(
            _at(field, "videos"), "videos need a {'type': 'video'} part or <video> tag to sit at"
        )
    _check_count(refs, vids, field, policy)
    return Sample(prompt, [response], refs, vids, id=uid or "")


def _at(field: str, name: str) -> str:
    return f"{field}.{name}" if field else name


def _response_text(m: ChatMessage, where: str) -> str:
    if isinstance(m.content, str):
        text = m.content
    else:
        if any(p.type != "text" for p in m.content):
            raise RequestError(where, "the assistant response may hold text parts only")
        text = "".join(p.text for p in m.content)
    if not text.strip():
        raise RequestError(where, "missing response: the assistant response is empty")
    return text


def _video(frames: list[str], where: str, policy: MediaPolicy) -> VideoRef:
    if not frames:
        raise RequestError(where, "a video needs at least one frame")
    refs = tuple(image_ref(f, f"{where}[{k}]", policy) for k, f in enumerate(frames))
    return VideoRef(frames=refs, where=where)


def _fill(slots: list, given: list, field: str, what: str) -> list:
    """Placeholders (None) take the sample-level media in order. With no slot at all, every given item is
    placed at the start of the first user turn (TRL's convention), which `_prepend_tags` does."""
    holes = sum(s is None for s in slots)
    if not slots:
        return list(given)
    if holes != len(given):
        raise RequestError(
            field, f"{len(given)} {what}(s) sent for {holes} {what} placeholder(s) in the messages"
        )
    it = iter(given)
    return [s if s is not None else next(it) for s in slots]


def _prepend_tags(prompt: list[dict], n: int, field: str) -> list[dict]:
    for k, m in enumerate(prompt):
        if m["role"] == "user":
            return prompt[:k] + [{**m, "content": IMAGE_TAG * n + m["content"]}] + prompt[k + 1 :]
    raise RequestError(field, "images were sent but there is no user turn to place them in")


def _check_count(refs: list, vids: list, field: str, policy: MediaPolicy) -> None:
    n = len(refs) + sum(len(v.frames) for v in vids)
    if n > policy.max_images:
        raise RequestError(
            field or "messages",
            f"too many images: {n} (video frames count too), the limit is {policy.max_images}",
        )


# ---- decoded chat text ----------------------------------------------------------------------------------------


def strip_sequence(text: str, strip_tokens: tuple[str, ...] = _STRIP_TOKENS) -> str:
    """Drop left padding and trailing pad/EOS tokens (and the newline the template prints after `<|im_end|>`)."""
    changed = True
    while changed:
        changed = False
        for tok in strip_tokens:
            if text.startswith(tok):
                text, changed = text[len(tok) :], True
    changed = True
    while changed:
        changed = False
        stripped = text.rstrip("\n")
        for tok in strip_tokens:
            if stripped.endswith(tok):
                text, changed = stripped[: -len(tok)], True
    return text


def sample_from_text(
    text: str,
    field: str,
    policy: MediaPolicy,
    *,
    images: list[ImageRef] = (),
    prompt: str | None = None,
    uid: str | None = None,
    strip_tokens: tuple[str, ...] = _STRIP_TOKENS,
) -> Sample:
    """Decoded prompt + response text (chat markup and special tokens kept) -> a one-response Sample."""
    body = _collapse(text, strip_tokens)
    if VIDEO_TAG in body:
        raise RequestError(
            field, "video placeholders in text cannot be scored: send the frames with /v1/reward"
        )
    if IM_START in body:
        messages, response = _chatml_turns(body, field)
    elif prompt and body.startswith(_collapse(prompt, strip_tokens)):
        p = _collapse(prompt, strip_tokens)
        messages, response = [{"role": "user", "content": p}], body[len(p) :]
    else:
        raise RequestError(
            field,
            "no chat markup (<|im_start|>) to tell the response from the prompt; send "
            "chat-formatted text or the prompt text",
        )
    if not response.strip():
        raise RequestError(field, "missing response: the text ends without an assistant response")
    n_tags = sum(m["content"].count(IMAGE_TAG) for m in messages)
    if n_tags != len(images):
        if n_tags and not images:
            raise RequestError(
                field,
                f"the text holds {n_tags} image placeholder(s) but no images were sent with "
                "it (images / labels[i].images); it is never scored as text-only",
            )
        raise RequestError(
            field, f"{len(images)} image(s) sent for {n_tags} image placeholder(s) in the text"
        )
    refs = list(images)
    _check_count(refs, [], field, policy)
    return Sample(messages, [response], refs, id=uid or "")


def _collapse(text: str, strip_tokens: tuple[str, ...]) -> str:
    """Strip pads/EOS and collapse each expanded vision run to one `<image>` / `<video>` tag."""
    return _VISION_RUN.sub(lambda m: IMAGE_TAG if m["img"] else VIDEO_TAG, strip_sequence(text, strip_tokens))


def _chatml_turns(body: str, field: str) -> tuple[list[dict], str]:
    head, *turns = body.split(IM_START)
    if head.strip():
        raise RequestError(field, "text before the first <|im_start|> turn")
    messages = []
    for t in turns:
        role, sep, content = t.partition("\n")
        if not sep or role not in ROLES:
            raise RequestError(field, f"unreadable chat turn starting {t[:20]!r} (roles: {', '.join(ROLES)})")
        if content.endswith(IM_END + "\n"):
            content = content[: -len(IM_END) - 1]
        elif content.endswith(IM_END):
            content = content[: -len(IM_END)]
        messages.append({"role": role, "content": content})
    if not messages or messages[-1]["role"] != "assistant":
        raise RequestError(field, "missing response: the text does not end with an assistant turn")
    if len(messages) == 1:  # as in sample_from_messages: an empty prompt cannot be templated
        raise RequestError(field, "missing prompt: no chat turn before the assistant response")
    return messages[:-1], messages[-1]["content"]


def texts_from_input(value: Any, field: str, tokenizer) -> list[tuple[str, str]]:
    """vLLM/SGLang `input` (a text, texts, token ids or lists of token ids) -> [(field, decoded text)]."""
    if isinstance(value, str):
        return [(field, value)]
    if not value:
        raise RequestError(field, "empty input")
    if all(isinstance(v, str) for v in value):
        return [(f"{field}[{i}]", v) for i, v in enumerate(value)]
    if all(isinstance(v, int) for v in value):
        return [(field, _decode(value, field, tokenizer))]
    return [(f"{field}[{i}]", _decode(v, f"{field}[{i}]", tokenizer)) for i, v in enumerate(value)]


def _decode(ids: list[int], field: str, tokenizer) -> str:
    n = len(tokenizer)
    bad = [t for t in ids if not 0 <= t < n]
    if not ids or bad:
        raise RequestError(field, f"token ids must be a non-empty list in [0, {n}); got {bad[:3] or 'none'}")
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


# ---- OpenRLHF ---------------------------------------------------------------------------------------------------


def parse_get_reward(
    req: GetRewardRequest, policy: MediaPolicy, strip_tokens=_STRIP_TOKENS, registry=None
) -> list[Parsed]:
    """OpenRLHF's request (+ images/uids extensions, or label objects carrying them) -> one Parsed per query.
    A query sent without images takes those registered for its uid in `registry` (`POST /v1/media`), if any."""
    n = len(req.query)
    for name in ("prompts", "labels", "images", "uids"):
        value = getattr(req, name)
        if value is not None and len(value) != n:
            raise BadRequest([RequestError(name, f"has {len(value)} entries for {n} queries")])

    def convert(i: int, q: str) -> Parsed:
        label = req.labels[i] if req.labels is not None else None
        meta = label if isinstance(label, dict) else {}
        uid = (req.uids[i] if req.uids is not None else None) or meta.get("uid")
        if req.images is not None and req.images[i] is not None:
            sources, where = req.images[i], f"images[{i}]"
        else:
            sources, where = meta.get("images") or [], f"labels[{i}].images"
        if not isinstance(sources, list):
            raise RequestError(where, "must be a list of image sources")
        refs = [image_ref(s, f"{where}[{k}]", policy) for k, s in enumerate(sources)]
        if not refs and registry is not None:
            refs = list(registry.get(None if uid is None else str(uid)) or [])
        prompt = req.prompts[i] if req.prompts is not None else None
        sample = sample_from_text(
            q, f"query[{i}]", policy, images=refs, prompt=prompt, uid=None, strip_tokens=strip_tokens
        )
        return Parsed(sample, f"query[{i}]", uid=None if uid is None else str(uid))

    return collect(req.query, convert)
