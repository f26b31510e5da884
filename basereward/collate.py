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

from dataclasses import dataclass, fields

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
    position_ids: torch.Tensor | None = (
        None  # (3, R, L) or (R, L) for packed layouts; None = computed by model
    )
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    pixel_values_videos: torch.Tensor | None = None
    video_grid_thw: torch.Tensor | None = None
    second_per_grid_ts: torch.Tensor | None = None

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
        for name in ("mm_token_type_ids", "position_ids", "pixel_values", "image_grid_thw",
                     "pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):  # fmt: skip
            v = getattr(self, name)
            if v is not None:
                kw[name] = v
        return kw


def collate_padded(samples: list[EncodedSample], pad_id: int) -> Batch:
    """One right-padded row per (prompt, response). See the module docstring for an example."""
    rows, types, pix, grids, vpix, vgrids, vsecs = [], [], [], [], [], [], []
    sample_index, response_index, lengths = [], [], []
    has_types = samples[0].prompt.mm_token_type_ids is not None
    for si, s in enumerate(samples):
        p = s.prompt
        for ri, resp in enumerate(s.responses):
            rows.append(p.input_ids + resp)
            if has_types:
                types.append(p.mm_token_type_ids + [0] * len(resp))
            if p.pixel_values is not None:
                pix.append(p.pixel_values)
                grids.append(p.image_grid_thw)
            if p.pixel_values_videos is not None:
                vpix.append(p.pixel_values_videos)
                vgrids.append(p.video_grid_thw)
                vsecs.append(p.second_per_grid_ts)
            sample_index.append(si)
            response_index.append(ri)
            lengths.append(len(resp))
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    mm_types = torch.zeros((len(rows), width), dtype=torch.long) if has_types else None
    for i, r in enumerate(rows):
        input_ids[i, : len(r)] = torch.tensor(r)
        attention_mask[i, : len(r)] = 1
        if has_types:
            mm_types[i, : len(r)] = torch.tensor(types[i])
    ends = torch.tensor([len(r) - 1 for r in rows], dtype=torch.long)
    return Batch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        score_rows=torch.arange(len(rows)),
        score_cols=ends,
        sample_index=torch.tensor(sample_index),
        response_index=torch.tensor(response_index),
        response_lengths=torch.tensor(lengths),
        mm_token_type_ids=mm_types,
        pixel_values=torch.cat(pix) if pix else None,
        image_grid_thw=torch.cat(grids) if grids else None,
        pixel_values_videos=torch.cat(vpix) if vpix else None,
        video_grid_thw=torch.cat(vgrids) if vgrids else None,
        second_per_grid_ts=torch.cat(vsecs) if vsecs else None,
    )
