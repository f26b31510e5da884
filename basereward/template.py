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
from dataclasses import dataclass

import torch

from basereward.types import IMAGE_TAG, VIDEO_TAG, DataError, Sample

VL_MODEL_TYPES = ("qwen2_5_vl", "qwen2_vl")
# Images larger than this are refused before decoding (decompression-bomb guard); the processor resizes anything
# accepted down to its own max_pixels.
MAX_SOURCE_PIXELS = 64_000_000
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
    """

    def __init__(
        self, processor, model_type: str, end_token: str = "<|im_end|>", max_source_pixels: int | None = None
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

    def response(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.end_id]

    def prompt(self, sample: Sample) -> PromptEncoding:
        label = sample.id or "sample"
        if not self.is_vl:
            if sample.images or sample.videos:
                raise DataError(
                    f"{label}: a text-only backbone ({self.model_type}) cannot take images or videos"
                )
            text = self.tokenizer.apply_chat_template(
                sample.prompt, add_generation_prompt=True, tokenize=False
            )
            return PromptEncoding(input_ids=self.tokenizer(text, add_special_tokens=False)["input_ids"])
        images = [ref.load(max_pixels=self.max_source_pixels) for ref in sample.images]
        text = self.processor.apply_chat_template(
            to_content_parts(sample.prompt), add_generation_prompt=True, tokenize=False
        )
        if not sample.videos:
            enc = self.processor(text=[text], images=images or None, return_tensors="pt")
            return PromptEncoding(
                input_ids=enc["input_ids"][0].tolist(),
                mm_token_type_ids=enc["mm_token_type_ids"][0].tolist(),
                pixel_values=enc.get("pixel_values"),
                image_grid_thw=enc.get("image_grid_thw"),
            )
        return self._prompt_with_videos(text, images, sample)

    def _prompt_with_videos(self, text: str, images: list, sample: Sample) -> PromptEncoding:
        """The processor cannot take videos without torchvision, so the text is cut at each <|video_pad|>: the
        pieces go through the processor with their own images, and each video's pads are spliced in between,
        built from PIL frames (`basereward.video`). Cuts fall next to special tokens, so BPE merges are unchanged."""
        from basereward.video import load_video_inputs

        pad_token = "<|video_pad|>"
        pieces = text.split(pad_token)
        if len(pieces) - 1 != len(sample.videos):
            raise DataError(
                f"{sample.id}: {len(sample.videos)} video(s) but {len(pieces) - 1} video placeholder(s)"
            )
        pad_id = self.tokenizer.convert_tokens_to_ids(pad_token)
        out = PromptEncoding(input_ids=[], mm_token_type_ids=[])
        pix, grids, vpix, vgrids, secs = [], [], [], [], []
        remaining = list(images)
        for k, piece in enumerate(pieces):
            n_img = piece.count("<|image_pad|>")
            piece_images, remaining = remaining[:n_img], remaining[n_img:]
            if piece:
                enc = self.processor(text=[piece], images=piece_images or None, return_tensors="pt")
                out.input_ids += enc["input_ids"][0].tolist()
                out.mm_token_type_ids += enc["mm_token_type_ids"][0].tolist()
                if piece_images:
                    pix.append(enc["pixel_values"])
                    grids.append(enc["image_grid_thw"])
            if k < len(sample.videos):
                v = load_video_inputs(sample.videos[k], self.processor.image_processor)
                out.input_ids += [pad_id] * v["num_tokens"]
                out.mm_token_type_ids += [2] * v["num_tokens"]
                vpix.append(v["pixel_values_videos"])
                vgrids.append(v["video_grid_thw"])
                secs += v["second_per_grid_ts"]
        out.pixel_values = torch.cat(pix) if pix else None
        out.image_grid_thw = torch.cat(grids) if grids else None
        out.pixel_values_videos = torch.cat(vpix)
        out.video_grid_thw = torch.cat(vgrids)
        out.second_per_grid_ts = torch.tensor(secs, dtype=torch.float32)
        return out

    def encode(self, sample: Sample) -> EncodedSample:
        if not sample.responses:
            raise DataError(f"{sample.id or 'sample'}: no responses to score")
        for i, r in enumerate(sample.responses):
            if not isinstance(r, str) or not r.strip():
                raise DataError(f"{sample.id or 'sample'}: response {i} is empty")
        return EncodedSample(self.prompt(sample), [self.response(r) for r in sample.responses], sample.id)
