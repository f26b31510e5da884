"""basereward.video: frame sampling as the official MM-RLHF script, and Qwen video inputs checked against an
independent computation, the library's PIL image processor (a static video embeds like its image)."""

import numpy as np
import pytest
import torch
from PIL import Image

from basereward.types import DataError, VideoRef
from basereward.video import build_video_inputs, list_frames, load_frames, sample_indices, video_inputs

MIN_PIX, MAX_PIX = 56 * 56, 112 * 112


def image_processor():
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
        size={"shortest_edge": MIN_PIX, "longest_edge": MAX_PIX},
    )


def as_image(frames: np.ndarray) -> dict:
    """The library's image path, one frame at a time: pixel_values (h*w, C*2*14*14) and grid (1, h, w)."""
    return image_processor()(images=[Image.fromarray(f) for f in frames], return_tensors="pt")


def random_frames(t, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def write_frames(folder, n, size=(32, 24)):
    """n PNG frames whose red channel encodes the frame index, plus files that are not frames."""
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", size, (i * 5, 10, 20)).save(folder / f"c01_{i:04d}.png")
    (folder / ".DS_Store").write_bytes(b"\0junk")
    (folder / "notes.txt").write_text("not a frame")
    return folder


def test_sample_indices_are_uniform_with_both_ends():
    assert sample_indices(32, 32) == list(range(32))
    idx = sample_indices(100, 32)
    assert len(idx) == 32 and idx[0] == 0 and idx[-1] == 99 and idx == sorted(idx)
    # 99 / 31 = 3.19...: gaps of 3 or 4 frames, truncated as numpy's int cast does
    assert set(np.diff(idx)) <= {3, 4}
    assert idx[:4] == [0, 3, 6, 9]
    # fewer frames than requested: indices repeat, never leave the folder
    assert sample_indices(5, 8) == [0, 0, 1, 1, 2, 2, 3, 4]
    assert sample_indices(1, 32) == [0] * 32
    with pytest.raises(ValueError):
        sample_indices(0)


def test_load_frames_sorts_filters_and_samples(tmp_path):
    folder = write_frames(tmp_path / "video" / "abc", 40)
    assert [p.name for p in list_frames(folder)] == [f"c01_{i:04d}.png" for i in range(40)]
    frames = load_frames(VideoRef(frames_dir=str(folder), where="x.jsonl:3 id=v1"))
    assert frames.shape == (32, 24, 32, 3) and frames.dtype == np.uint8
    assert [int(v) // 5 for v in frames[:, 0, 0, 0]] == sample_indices(40, 32)


def test_missing_or_empty_frames_folder_names_the_record(tmp_path):
    with pytest.raises(DataError, match=r"x\.jsonl:3 id=v1: video frames folder not found: .*nope"):
        load_frames(VideoRef(frames_dir=str(tmp_path / "nope"), where="x.jsonl:3 id=v1"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_frames(VideoRef(frames_dir=str(tmp_path / "empty"), where="x.jsonl:4 id=v2"))


def test_static_video_equals_the_image_path_at_native_size():
    frame = random_frames(1, 56, 84)
    image = as_image(frame)
    video = video_inputs(np.repeat(frame, 2, axis=0), min_pixels=MIN_PIX, max_pixels=MAX_PIX)
    assert video["video_grid_thw"].tolist() == image["image_grid_thw"].tolist() == [[1, 4, 6]]
    assert video["pixel_values_videos"].shape == image["pixel_values"].shape == (24, 1176)
    # the same numbers up to float32 rounding (fused vs separate rescale/normalise)
    torch.testing.assert_close(video["pixel_values_videos"], image["pixel_values"].float(), atol=1e-6, rtol=0)
    assert video["num_tokens"] == 24 // 4


def test_temporal_layout_pairs_consecutive_frames():
    """Patch row r of temporal group g holds, for every channel, frame 2g then frame 2g+1: compare with the
    image processor's patch of each frame (which repeats one frame across the temporal slot)."""
    frames = random_frames(4, 56, 56, seed=1)
    video = video_inputs(frames, min_pixels=MIN_PIX, max_pixels=MAX_PIX)
    t, h, w = video["video_grid_thw"][0].tolist()
    assert (t, h, w) == (2, 4, 4)
    got = video["pixel_values_videos"].view(t, h * w, 3, 2, 14, 14)
    per_frame = as_image(frames)["pixel_values"].float().view(4, h * w, 3, 2, 14, 14)
    for g in range(t):
        for slot in range(2):
            torch.testing.assert_close(
                got[g, :, :, slot], per_frame[2 * g + slot, :, :, 0], atol=1e-6, rtol=0
            )


def test_odd_frame_count_repeats_the_last_frame():
    frames = random_frames(3, 28, 56, seed=2)
    video = video_inputs(frames, min_pixels=28 * 28, max_pixels=MAX_PIX)
    t, h, w = video["video_grid_thw"][0].tolist()
    assert (t, h, w) == (2, 2, 4)
    last = video["pixel_values_videos"].view(t, h * w, 3, 2, 14, 14)[1]
    torch.testing.assert_close(last[:, :, 0], last[:, :, 1], atol=0, rtol=0)
    assert video["num_tokens"] == 2 * 2 * 4 // 4


def test_resized_frames_match_the_image_grid_and_stay_close_to_pil():
    """After a resize the grid must be the image path's (same smart resize); values differ only by the bicubic
    kernel (torch's antialiased uint8 kernel, as torchvision, vs PIL's), within the ~1.5e-2 measured in docs/environment.md §8."""
    frames = np.repeat(random_frames(1, 300, 200, seed=3), 2, axis=0)
    image = as_image(frames[:1])
    video = build_video_inputs(frames, image_processor())
    assert video["video_grid_thw"].tolist() == image["image_grid_thw"].tolist()
    diff = (video["pixel_values_videos"] - image["pixel_values"].float()).abs().max().item()
    assert 0 < diff < 0.05
    assert video["second_per_grid_ts"] == [2 / 24.0]


def test_tiny_model_embeds_a_static_video_like_its_image_and_runs_a_video_forward():
    from basereward.tiny import build_model, build_tokenizer

    tok = build_tokenizer()
    model = build_model("qwen2_5_vl", tok, size="test", seed=0).eval()
    frame = random_frames(1, 56, 56, seed=4)
    image = as_image(frame)
    video = video_inputs(np.repeat(frame, 2, axis=0), min_pixels=MIN_PIX, max_pixels=MAX_PIX)
    with torch.no_grad():
        img_emb = model.model.get_image_features(
            image["pixel_values"], image["image_grid_thw"]
        ).pooler_output[0]
        vid_emb = model.model.get_video_features(
            video["pixel_values_videos"], video["video_grid_thw"]
        ).pooler_output[0]
    assert img_emb.shape == vid_emb.shape == (video["num_tokens"], model.config.text_config.hidden_size)
    torch.testing.assert_close(vid_emb, img_emb, atol=1e-5, rtol=0)

    # a whole video prompt: <|video_pad|> expanded to num_tokens, typed 2 so mRoPE sees the video
    frames = random_frames(5, 56, 84, seed=5)
    video = video_inputs(frames, min_pixels=MIN_PIX, max_pixels=MAX_PIX)
    ids = tok.convert_tokens_to_ids
    n = video["num_tokens"]
    seq = (
        [ids("<|im_start|>"), ids("<|vision_start|>")] + [ids("<|video_pad|>")] * n + [ids("<|vision_end|>")]
    )
    seq += tok("what happens?", add_special_tokens=False)["input_ids"]
    input_ids = torch.tensor([seq])
    mm_types = (input_ids == ids("<|video_pad|>")).long() * 2
    with torch.no_grad():
        out = model.model(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            pixel_values_videos=video["pixel_values_videos"],
            video_grid_thw=video["video_grid_thw"],
            second_per_grid_ts=torch.tensor(video["second_per_grid_ts"]),
            mm_token_type_ids=mm_types,
        )
    assert out.last_hidden_state.shape[:2] == (1, len(seq))
    assert torch.isfinite(out.last_hidden_state).all()
