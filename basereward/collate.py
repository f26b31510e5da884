"""EncodedSample list -> Batch: the tensors one backbone forward takes, plus where to read each reward.

Layout `padded`: one row per (prompt, response), right-padded; a prompt with K responses becomes K rows (its images
are repeated K times). Rewards are read at `(score_rows[i], score_cols[i])`, the last token of each row.

Example (pad = 0; prompt ids P = [5, 6], image-free; sample A has responses [7, 2] and [8, 9, 2]; sample B has
prompt [5] and response [4, 2]; 2 is the scored <|im_end|>):

    input_ids      = [[5, 6, 7, 2, 0],      attention_mask = [[1, 1, 1, 1, 0],
                      [5, 6, 8, 9, 2],                        [1, 1, 1, 1, 1],
                      [5, 4, 2, 0, 0]]                        [1, 1, 1, 0, 0]]
    score_rows     = [0, 1, 2]       score_cols = [3, 4, 2]
    sample_index   = [0, 0, 1]       response_index = [0, 1, 0]       response_lengths = [2, 3, 2]

Rewards come out in sample order, responses in order within a sample: for pairs [chosen, rejected], rewards[0::2]
are the chosen and rewards[1::2] the rejected. The prefix-shared packed layout (one row per prompt, responses side by
side, a 4-D mask and explicit position ids) fills the same Batch fields plus `position_ids`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from basereward.template import EncodedSample


@dataclass
class Batch:
    input_ids: torch.Tensor  # (R, L) long
    attention_mask: torch.Tensor  # (R, L) 2-D padding mask, or (R, 1, L, L) bool for packed layouts
    score_rows: torch.Tensor  # (N,) long: row of each reward's scored token
    score_cols: torch.Tensor  # (N,) long: column of each reward's scored token
    sample_index: torch.Tensor  # (N,) long: which input sample each reward belongs to
    response_index: torch.Tensor  # (N,) long: which response of that sample
    response_lengths: torch.Tensor  # (N,) long: response tokens including the scored token
    mm_token_type_ids: torch.Tensor | None = None  # (R, L)
    # (3, R, L) or (R, L) for packed layouts; None = computed by model
    position_ids: torch.Tensor | None = None
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    pixel_values_videos: torch.Tensor | None = None
    video_grid_thw: torch.Tensor | None = None
    second_per_grid_ts: torch.Tensor | None = None
    # shared layout only: (R, L) amount subtracted from each token's sequential position so that every response
    # restarts right after its prompt; the model turns it into (3, R, L) mRoPE / (R, L) 1-D position ids
    position_shift: torch.Tensor | None = None
    valid_mask: torch.Tensor | None = None  # shared layout only: (R, L) 1 for real tokens, 0 for padding

    def to(self, device) -> Batch:
        moved = {}
        for f in fields(self):
            v = getattr(self, f.name)
            moved[f.name] = v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        return Batch(**moved)

    @property
    def num_rewards(self) -> int:
        return int(self.score_rows.numel())

    def model_inputs(self) -> dict:
        """Keyword arguments for the backbone forward (vision keys only when present)."""
        kw = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        for name in (
            "mm_token_type_ids",
            "position_ids",
            "pixel_values",
            "image_grid_thw",
            "pixel_values_videos",
            "video_grid_thw",
            "second_per_grid_ts",
        ):
            v = getattr(self, name)
            if v is not None:
                kw[name] = v
        return kw


def collate_padded(samples: list[EncodedSample], pad_id: int) -> Batch:
    """One right-padded row per (prompt, response). See the module docstring for an example."""
    rows, types, prompts, sample_index, response_index, lengths = [], [], [], [], [], []
    has_types = samples[0].prompt.mm_token_type_ids is not None
    for si, s in enumerate(samples):
        p = s.prompt
        for ri, resp in enumerate(s.responses):
            rows.append(p.input_ids + resp)
            types.append((p.mm_token_type_ids or []) + [0] * len(resp))
            prompts.append(p)  # the prompt's images go with every row that repeats it
            sample_index.append(si)
            response_index.append(ri)
            lengths.append(len(resp))
    return Batch(
        input_ids=_pad(rows, pad_id),
        attention_mask=_pad([[1] * len(r) for r in rows], 0),
        score_rows=torch.arange(len(rows)),
        score_cols=torch.tensor([len(r) - 1 for r in rows], dtype=torch.long),
        sample_index=torch.tensor(sample_index),
        response_index=torch.tensor(response_index),
        response_lengths=torch.tensor(lengths),
        mm_token_type_ids=_pad(types, 0) if has_types else None,
        **_vision(prompts),
    )


def collate_shared(samples: list[EncodedSample], pad_id: int) -> Batch:
    """Prefix-shared layout: one row per sample, `[prompt | response 1 | ... | response K]`, right-padded.

    The image and prompt are encoded once per sample instead of once per response. Exactness comes from three parts:
    - a 4-D boolean mask (R, 1, L, L): a token sees the prompt and the earlier tokens of its own response, never
      another response; padding sees only itself (so no row of the softmax is empty);
    - `position_shift`: response k's positions are reduced by the lengths of responses 1..k-1, so each starts at
      the position right after the prompt (on all three mRoPE axes: responses are text);
    - rewards are read at the last token of each response.

    Example (prompt [5, 6], responses [7, 2] and [8, 9, 2]; second sample prompt [5], response [4, 2]; pad 0):

        input_ids      = [[5, 6, 7, 2, 8, 9, 2],     segments = [[0, 0, 1, 1, 2, 2, 2],
                          [5, 4, 2, 0, 0, 0, 0]]                 [0, 1, 1, -1, -1, -1, -1]]
        position_shift = [[0, 0, 0, 0, 2, 2, 2],     -> positions [[0, 1, 2, 3, 2, 3, 4], [0, 1, 2, ...]]
                          [0, 0, 0, 0, 0, 0, 0]]
        score_rows = [0, 0, 1]     score_cols = [3, 6, 2]
    """
    rows, types, shifts, segs = [], [], [], []
    score_rows, score_cols, sample_index, response_index, lengths = [], [], [], [], []
    has_types = samples[0].prompt.mm_token_type_ids is not None
    for si, s in enumerate(samples):
        p = s.prompt
        row, seg, shift, before = list(p.input_ids), [0] * len(p.input_ids), [0] * len(p.input_ids), 0
        for ri, resp in enumerate(s.responses):
            row += resp
            seg += [ri + 1] * len(resp)
            shift += [before] * len(resp)
            before += len(resp)
            score_rows.append(si)
            score_cols.append(len(row) - 1)
            sample_index.append(si)
            response_index.append(ri)
            lengths.append(len(resp))
        rows.append(row)
        segs.append(seg)
        shifts.append(shift)
        types.append((p.mm_token_type_ids or []) + [0] * (len(row) - len(p.input_ids)))
    segments = _pad(segs, -1)
    return Batch(
        input_ids=_pad(rows, pad_id),
        attention_mask=shared_attention_mask(segments),
        score_rows=torch.tensor(score_rows),
        score_cols=torch.tensor(score_cols),
        sample_index=torch.tensor(sample_index),
        response_index=torch.tensor(response_index),
        response_lengths=torch.tensor(lengths),
        mm_token_type_ids=_pad(types, 0) if has_types else None,
        position_shift=_pad(shifts, 0),
        valid_mask=(segments >= 0).long(),
        **_vision([s.prompt for s in samples]),
    )


def _pad(rows: list[list[int]], fill: int) -> torch.Tensor:
    """Right-pad integer rows to one (R, L) long tensor."""
    out = torch.full((len(rows), max(len(r) for r in rows)), fill, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


VISION_FIELDS = (
    "pixel_values",
    "image_grid_thw",
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",
)


def _vision(prompts: list) -> dict:
    """The rows' vision tensors concatenated in row order (a prompt listed twice contributes twice)."""
    out = {}
    for name in VISION_FIELDS:
        parts = [getattr(p, name) for p in prompts if getattr(p, name) is not None]
        out[name] = torch.cat(parts) if parts else None
    return out


def shared_attention_mask(segments: torch.Tensor) -> torch.Tensor:
    """(R, L) segment ids (-1 pad, 0 prompt, k >= 1 response k) -> (R, 1, L, L) bool, True = may attend.

    allowed[q, k] = k <= q and seg[k] >= 0 and (seg[k] == 0 or seg[k] == seg[q]); a padding query sees itself."""
    length = segments.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    q, k = segments[:, :, None], segments[:, None, :]
    allowed = causal & (k >= 0) & ((k == 0) | (k == q))
    pad_self = torch.eye(length, dtype=torch.bool) & (q < 0)
    return (allowed | pad_self)[:, None]


COLLATORS = {"padded": collate_padded, "shared": collate_shared}


def left_padded(batch: Batch) -> Batch:
    """A right-padded `padded`-layout batch with its padding moved to the left, as generation needs (every row's
    next token then comes at the last column). Vision tensors and the reward bookkeeping are unchanged; the scored
    column becomes the last."""
    lengths = batch.attention_mask.sum(1)
    width = batch.input_ids.shape[1]
    # column j of row r takes the row's column j - (width - length): the real tokens end at the last column
    src = (torch.arange(width)[None] - (width - lengths)[:, None]) % width
    moved = {
        name: getattr(batch, name).gather(1, src)
        for name in ("input_ids", "attention_mask", "mm_token_type_ids")
        if getattr(batch, name) is not None
    }
    return replace(batch, **moved, score_cols=torch.full_like(batch.score_cols, width - 1))
