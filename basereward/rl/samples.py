"""RL frameworks' rollout records -> `Sample`s in the unified convention (what the one preprocessing path eats).

Frameworks hand over prompts as chat messages whose content is a string or a list of parts (TRL injects
`{"type": "image", "image": <PIL>}` parts), completions as strings or assistant messages, and images as PIL
images, paths, bytes, data URIs or 🤗 datasets' `{"bytes", "path"}` dicts. These helpers turn each into the
prompt-with-`<image>`-tags + `ImageRef` form, so an adapter's sample encodes to the same token ids as the same
sample given to `RewardScorer` directly.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from basereward.types import IMAGE_TAG, ImageRef, Sample


def image_ref(img, where: str = "") -> ImageRef:
    """A PIL image (stored losslessly as PNG), a path, bytes, a data URI, a {"bytes","path"} dict or an ImageRef."""
    if isinstance(img, ImageRef):
        return img
    if isinstance(img, bytes | bytearray):
        return ImageRef(data=bytes(img), where=where)
    if isinstance(img, str):
        if img.startswith("data:"):
            return ImageRef(data=base64.b64decode(img.split(",", 1)[1]), where=where)
        return ImageRef(path=img, where=where)
    if isinstance(img, dict):
        if img.get("bytes"):
            return ImageRef(data=bytes(img["bytes"]), where=where)
        if img.get("path"):
            return ImageRef(path=str(img["path"]), where=where)
        raise ValueError(f"{where}: image dict has neither bytes nor path")
    if hasattr(img, "save"):  # PIL image
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return ImageRef(data=buf.getvalue(), where=where)
    raise TypeError(f"{where}: unsupported image type {type(img).__name__}")


def _content_text(content) -> tuple[str, int]:
    """Message content -> (text with one <image> tag per image part, number of image parts)."""
    if isinstance(content, str):
        return content, content.count(IMAGE_TAG)
    pieces, n = [], 0
    for part in content or []:
        kind = part.get("type")
        if kind in ("image", "image_url") or (kind is None and "image" in part):
            pieces.append(IMAGE_TAG)
            n += 1
        elif kind == "text" or "text" in part:
            pieces.append(part.get("text") or "")
        else:
            raise ValueError(f"unsupported content part type {kind!r} (text and image only)")
    return "".join(pieces), n


def prompt_messages(prompt, n_images: int) -> list[dict]:
    """A prompt (string or chat messages) -> unified messages holding exactly `n_images` <image> tags. With no image
    part at all, the tags go at the start of the first user turn (TRL's convention)."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = [{"role": m["role"], "content": _content_text(m.get("content"))[0]} for m in prompt]
    tags = sum(m["content"].count(IMAGE_TAG) for m in messages)
    if tags == 0 and n_images:
        for k, m in enumerate(messages):
            if m["role"] == "user":
                messages[k] = {**m, "content": IMAGE_TAG * n_images + m["content"]}
                return messages
        raise ValueError("images given but the prompt has no user turn")
    if tags != n_images:
        raise ValueError(f"the prompt has {tags} image placeholder(s) but {n_images} image(s) were given")
    return messages


def completion_text(completion) -> str:
    """A completion as a string, or as assistant messages (conversational format) -> its text."""
    if isinstance(completion, str):
        return completion
    texts = [
        _content_text(m.get("content"))[0] for m in completion if m.get("role", "assistant") == "assistant"
    ]
    return "".join(texts)


def merge_by_prompt(samples: Sequence[Sample]) -> tuple[list[Sample], list[tuple[int, int]]]:
    """Samples sharing prompt + images -> one Sample with several responses (the prompt and its images are encoded
    once). Returns the merged samples and, per input sample, (merged index, response index)."""
    merged: list[Sample] = []
    where: dict[str, int] = {}
    index: list[tuple[int, int]] = []
    for s in samples:
        key = s.prompt_key() or f"unique:{len(index)}"  # a sample with videos is never merged
        if key not in where:
            where[key] = len(merged)
            merged.append(Sample(s.prompt, [], list(s.images), list(s.videos), id=s.id))
        m = merged[where[key]]
        index.append((where[key], len(m.responses)))
        m.responses.extend(s.responses)
    return merged, index


def score_merged(scorer, samples: Sequence[Sample]) -> list[float]:
    """Raw reward of each one-response sample, scoring shared prompts once."""
    merged, index = merge_by_prompt(samples)
    rewards = scorer(merged, progress=False)
    return [rewards[m][r] for m, r in index]
