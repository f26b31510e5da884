"""The collator's documented example, exactly."""

import torch

from basereward.collate import collate_padded
from basereward.template import EncodedSample, PromptEncoding


def test_padded_layout_matches_the_docstring_example():
    a = EncodedSample(PromptEncoding(input_ids=[5, 6]), [[7, 2], [8, 9, 2]])
    b = EncodedSample(PromptEncoding(input_ids=[5]), [[4, 2]])
    batch = collate_padded([a, b], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7, 2, 0], [5, 6, 8, 9, 2], [5, 4, 2, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch.score_rows.tolist() == [0, 1, 2]
    assert batch.score_cols.tolist() == [3, 4, 2]
    assert batch.sample_index.tolist() == [0, 0, 1]
    assert batch.response_index.tolist() == [0, 1, 0]
    assert batch.response_lengths.tolist() == [2, 3, 2]
    assert batch.mm_token_type_ids is None and batch.pixel_values is None


def test_images_are_repeated_per_response_row_and_types_padded():
    pv = torch.arange(8.0).reshape(4, 2)
    grid = torch.tensor([[1, 2, 2]])
    a = EncodedSample(PromptEncoding([1, 3, 3, 4], [0, 1, 1, 0], pv, grid), [[7, 2], [8, 2]])
    t = EncodedSample(PromptEncoding([1, 4], [0, 0]), [[9, 9, 2]])
    batch = collate_padded([a, t], pad_id=0)
    assert batch.pixel_values.shape == (8, 2) and batch.image_grid_thw.tolist() == [[1, 2, 2], [1, 2, 2]]
    assert batch.mm_token_type_ids.tolist() == [[0, 1, 1, 0, 0, 0], [0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]]
