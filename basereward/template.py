"""Preprocessing, in one place: chat template, image placeholders, response tokens, the scored token.

Training, evaluation, `score`, the server and the RL adapters all turn a `Sample` into token ids here, so they feed
the model identical ids for the same sample (a test checks it).

How a sample becomes tokens:
- prompt: the unified record's messages; each literal `<image>` / `<video>` tag in a message becomes a
  `{"type": "image"}` / `{"type": "video"}` content part, then the checkpoint's own chat template renders it with
  `add_generation_prompt=True` and the processor expands each image pad to one token per merged 28x28 patch.
- response: `tokenizer(text, add_special_tokens=False)` followed by the turn-closing token (`<|im_end|>` for Qwen).
  Prompt and response are tokenised separately and concatenated: byte-level BPE can merge across a boundary, and the
  packed and unpacked layouts must see the same ids.
- **the scored token**: the reward is read from the final hidden state at the turn-closing `<|im_end|>` token
  appended to each response, i.e. the last token of every sequence. The trailing newline the chat template would
  print after it is not fed.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from basereward.types import IMAGE_TAG, MAX_IMAGE_PIXELS, VIDEO_TAG, DataError, Sample

VL_MODEL_TYPES = ("qwen2_5_vl", "qwen2_vl")
# Images larger than types.MAX_IMAGE_PIXELS are refused before decoding (decompression-bomb guard); the processor
# resizes anything accepted down to its own max_pixels.
MAX_SOURCE_PIXELS = MAX_IMAGE_PIXELS
_TAG_RE = re.compile(f"({re.escape(IMAGE_TAG)}|{re.escape(VIDEO_TAG)})")


@dataclass
class PromptEncoding:
    """One prompt, tokenised, with its vision inputs. Tensors are on CPU."""

    input_ids: list[int]
    mm_token_type_ids: list[int] | None = None  # 0 text, 1 image, 2 video; None for text backbones
    pixel_values: torch.Tensor | None = None  # (n_patches, C*temporal*patch*patch)
    image_grid_thw: torch.Tensor | None = None  # (n_images, 3)
    pixel_values_videos: torch.Tensor | None = None
    video_grid_thw: torch.Tensor | None = None  # (n_videos, 3)
    second_per_grid_ts: torch.Tensor | None = None  # (n_videos,) seconds per temporal grid step


@dataclass
class EncodedSample:
    prompt: PromptEncoding
    responses: list[list[int]]  # each ends with the scored token
    id: str = ""


def to_content_parts(messages: list[dict]) -> list[dict]:
    """Unified-record messages (strings with <image>/<video> tags) -> Qwen content-part messages."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str) and _TAG_RE.search(content):
            parts = []
            for piece in _TAG_RE.split(content):
                if piece == IMAGE_TAG:
                    parts.append({"type": "image"})
                elif piece == VIDEO_TAG:
                    parts.append({"type": "video"})
                elif piece:
                    parts.append({"type": "text", "text": piece})
            out.append({"role": m["role"], "content": parts})
        else:
            out.append({"role": m["role"], "content": content})
    return out


class Encoder:
    """Turns `Sample`s into token ids + vision tensors for one checkpoint's processor.

    `processor` is the image-only Qwen VL processor (VL backbones) or a tokenizer (text backbones).

    `prompt_cache=N` keeps the N most recently used prompt encodings, keyed by `Sample.prompt_key()` (prompt text
    and image bytes): samples that repeat a prompt and its images (the G rollouts of a GRPO group, arriving at the
    server as separate requests) then share one chat-template render, one image decode and one patching. A hit
    returns the same `PromptEncoding` object, which nothing downstream mutates. Samples with videos are never
    cached. `encode` may be called from several threads (the server's preprocessing pool). Only what is not
    thread-safe is serialised: HF fast tokenizers must not be entered by two threads at once (`_tok_lock` covers
    every tokenizer call and chat-template render) and the LRU's bookkeeping (`_lock`). Image/video decoding and
    the image processor's resize and patching, the heavy part, run outside both locks, so the threads encode image
    requests in parallel (PIL's decoders and resampling release the GIL). Two threads missing the same prompt at
    once both encode it; the first to finish is cached and both get that object.
    """

    def __init__(
        self,
        processor,
        model_type: str,
        end_token: str = "<|im_end|>",
        max_source_pixels: int | None = None,
        prompt_cache: int = 0,
    ):
        self.processor = processor
        self.model_type = model_type
        self.is_vl = model_type in VL_MODEL_TYPES
        self.tokenizer = processor.tokenizer if self.is_vl else processor
        self.end_token = end_token
        self.end_id = self.tokenizer.convert_tokens_to_ids(end_token)
        if self.end_id is None or self.end_id == self.tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {end_token!r} token to score at")
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.end_id
        self.max_source_pixels = max_source_pixels or MAX_SOURCE_PIXELS
        self.prompt_cache = prompt_cache  # capacity; 0 = off (may be changed later, e.g. by the server)
        self._prompts: OrderedDict[str, PromptEncoding] = OrderedDict()
        # `_lock` guards the prompt cache, `_tok_lock` the tokenizer; neither is taken while holding the other
        self._lock = threading.Lock()
        self._tok_lock = threading.Lock()

    def __getstate__(self) -> dict:
        # DataLoader workers receive the encoder pickled: a lock cannot be, and each worker keeps its own cache
        state = dict(self.__dict__)
        state["_lock"], state["_tok_lock"], state["_prompts"] = None, None, OrderedDict()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._tok_lock = threading.Lock()

    def _ids(self, text: str) -> list[int]:
        with self._tok_lock:
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def response(self, text: str) -> list[int]:
        return self._ids(text) + [self.end_id]

    def prompt(self, sample: Sample) -> PromptEncoding:
        label = sample.id or "sample"
        if not self.is_vl:
            if sample.images or sample.videos:
                raise DataError(
                    f"{label}: a text-only backbone ({self.model_type}) cannot take images or videos"
                )
            with self._tok_lock:
                text = self.tokenizer.apply_chat_template(
                    sample.prompt, add_generation_prompt=True, tokenize=False
                )
            return PromptEncoding(input_ids=self._ids(text))
        # decoded without a lock (see the class docstring): the slow part of a request's preprocessing
        images = [ref.load(max_pixels=self.max_source_pixels) for ref in sample.images]
        with self._tok_lock:
            text = self.processor.apply_chat_template(
                to_content_parts(sample.prompt), add_generation_prompt=True, tokenize=False
            )
        return self._vision_prompt(text, images, sample)

    def _vision_prompt(self, text: str, images: list, sample: Sample) -> PromptEncoding:
        """Tokenise the templated text once, then expand each `<|image_pad|>` / `<|video_pad|>` to one token per
        merged patch of its image / video. This is what the Qwen processor's `__call__` does (a test checks the
        ids, token types and pixels are identical) without its per-call overhead, and it can take videos, which
        the processor cannot without torchvision (video inputs are built from PIL frames in `basereward.video`)."""
        ids = self._ids(text)
        with self._tok_lock:
            image_pad = self.tokenizer.convert_tokens_to_ids("<|image_pad|>")
            video_pad = self.tokenizer.convert_tokens_to_ids("<|video_pad|>")
        label = sample.id or "sample"
        if ids.count(image_pad) != len(images):
            raise DataError(
                f"{label}: {len(images)} image(s) but {ids.count(image_pad)} image placeholder(s)"
            )
        if ids.count(video_pad) != len(sample.videos):
            raise DataError(
                f"{label}: {len(sample.videos)} video(s) but {ids.count(video_pad)} video placeholder(s)"
            )
        ip = self.processor.image_processor
        out = PromptEncoding(input_ids=[], mm_token_type_ids=[])
        image_tokens: list[int] = []
        if images:
            vis = ip(images=images, return_tensors="pt")
            out.pixel_values, out.image_grid_thw = vis["pixel_values"], vis["image_grid_thw"]
            image_tokens = (out.image_grid_thw.prod(-1) // ip.merge_size**2).tolist()
        video_tokens: list[int] = []
        if sample.videos:
            from basereward.video import load_video_inputs

            vids = [load_video_inputs(v, ip) for v in sample.videos]
            out.pixel_values_videos = torch.cat([v["pixel_values_videos"] for v in vids])
            out.video_grid_thw = torch.cat([v["video_grid_thw"] for v in vids])
            out.second_per_grid_ts = torch.tensor([t for v in vids for t in v["second_per_grid_ts"]])
            video_tokens = [v["num_tokens"] for v in vids]
        n_img = n_vid = 0
        for t in ids:
            if t == image_pad:
                n, kind, n_img = image_tokens[n_img], 1, n_img + 1
            elif t == video_pad:
                n, kind, n_vid = video_tokens[n_vid], 2, n_vid + 1
            else:
                n, kind = 1, 0
            out.input_ids += [t] * n
            out.mm_token_type_ids += [kind] * n
        return out

    def encode(self, sample: Sample) -> EncodedSample:
        if not sample.responses:
            raise DataError(f"{sample.id or 'sample'}: no responses to score")
        for i, r in enumerate(sample.responses):
            if not isinstance(r, str) or not r.strip():
                raise DataError(f"{sample.id or 'sample'}: response {i} is empty")
        key = sample.prompt_key() if self.prompt_cache > 0 else None
        prompt = None
        if key is not None:
            with self._lock:
                prompt = self._prompts.get(key)
                if prompt is not None:
                    self._prompts.move_to_end(key)
        if prompt is None:
            prompt = self.prompt(sample)  # outside `_lock`: decoding must not block the other threads' hits
            if key is not None:
                with self._lock:
                    # another thread may have cached this prompt meanwhile: keep one object per key
                    prompt = self._prompts.setdefault(key, prompt)
                    self._prompts.move_to_end(key)
                    while len(self._prompts) > self.prompt_cache:
                        self._prompts.popitem(last=False)
        return EncodedSample(prompt, [self.response(r) for r in sample.responses], sample.id)


def scorer_encoder(model, processor, encoder: Encoder | None, prompt_cache: int, who: str) -> Encoder:
    """The encoder a scorer (`scoring.RewardScorer`, `GenerativeScorer`) uses: the one given, else one built from
    the checkpoint's processor for `model`."""
    if encoder is not None:
        return encoder
    if processor is None:
        raise ValueError(f"{who} needs the checkpoint's processor or a ready encoder")
    return Encoder(processor, model.model_type, model.pool_token, prompt_cache=prompt_cache)
