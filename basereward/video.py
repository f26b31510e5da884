"""Qwen2-VL / Qwen2.5-VL video inputs from a folder of frames, without torchvision (docs/environment.md §8, "Video
input without torchvision").

transformers' Qwen video processor imports torchvision, which cannot be installed on our stack. This module builds
the same tensors from PIL frames: sample frames as the official MM-RLHF-RewardBench script does (sorted files,
32 indices by `np.linspace`), resize every frame to Qwen's "smart resize" size with the uint8 bicubic antialiased
kernel torchvision itself calls on CPU, normalise with the fused CLIP mean/std, and lay patches out as the library
does. The result feeds the model as `pixel_values_videos`, `video_grid_thw`, `second_per_grid_ts`; the prompt's
`<|video_pad|>` is expanded to `num_tokens` tokens with `mm_token_type_ids = 2`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from basereward.types import DataError, VideoRef

NUM_FRAMES = 32  # the official MM-RLHF reward-model eval samples 32 frames per video
FRAME_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Qwen2VLVideoProcessor's pixel bounds per frame (its class defaults), used when no processor says otherwise.
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
# transformers assumes 24 fps for a video given as a list of frames without metadata (VideoMetadata.sampled_fps).
DEFAULT_FPS = 24.0


def list_frames(frames_dir: str | Path, where: str = "") -> list[Path]:
    """The frame files of a folder, sorted by name (the official script sorts the joined paths, same order).

    Only image files count: the official script takes every file and would crash on a stray `.DS_Store`."""
    label = f"{where}: " if where else ""
    d = Path(frames_dir)
    if not d.is_dir():
        raise DataError(f"{label}video frames folder not found: {d}")
    frames = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES)
    if not frames:
        raise DataError(f"{label}video frames folder has no image files: {d}")
    return frames


def sample_indices(total: int, num: int = NUM_FRAMES) -> list[int]:
    """`num` indices spread uniformly over `total` frames, ends included; repeats when total < num (as the
    official `np.linspace(0, total - 1, num, dtype=int)`)."""
    if total < 1:
        raise ValueError("a video needs at least one frame")
    return [int(i) for i in np.clip(np.linspace(0, total - 1, num, dtype=int), 0, total - 1)]


def load_frames(video: VideoRef | str | Path, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """Sampled frames as a uint8 array (T, H, W, 3). Raises DataError naming the record for a missing folder,
    an unreadable frame, or frames of different sizes."""
    from PIL import Image

    if isinstance(video, VideoRef):
        where = video.where
        if video.frames:
            chosen = [video.frames[i] for i in sample_indices(len(video.frames), num_frames)]
            return _stack([f.load() for f in chosen], where)
        if video.frames_dir is None:
            raise DataError(f"{where}: video has neither a frames folder nor frames")
        frames_dir = video.frames_dir
    else:
        where, frames_dir = "", video
    files = list_frames(frames_dir, where)
    images = []
    for i in sample_indices(len(files), num_frames):
        try:
            with Image.open(files[i]) as im:
                images.append(im.convert("RGB"))
        except OSError as e:
            raise DataError(f"{where}: unreadable video frame {files[i]}: {e}") from e
    return _stack(images, where)


def _stack(images, where: str) -> np.ndarray:
    sizes = {im.size for im in images}
    if len(sizes) != 1:
        raise DataError(f"{where}: video frames differ in size {sorted(sizes)}")
    return np.stack([np.asarray(im, dtype=np.uint8) for im in images])


def video_inputs(
    frames: np.ndarray,
    *,
    min_pixels: int = VIDEO_MIN_PIXELS,
    max_pixels: int = VIDEO_MAX_PIXELS,
    patch_size: int = 14,
    temporal_patch_size: int = 2,
    merge_size: int = 2,
    image_mean: tuple[float, ...] = CLIP_MEAN,
    image_std: tuple[float, ...] = CLIP_STD,
    fps: float = DEFAULT_FPS,
) -> dict:
    """Model inputs for one video given as uint8 frames (T, H, W, C).

    Returns `pixel_values_videos` (t*h*w, C*temporal*patch*patch) float32, `video_grid_thw` (1, 3) int64,
    `second_per_grid_ts` [temporal / fps] (pass it to the model: Qwen2.5-VL's temporal positions use it) and
    `num_tokens` = t*h*w / merge**2, the number of `<|video_pad|>` tokens the prompt needs.
    """
    import torch
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a uint8 array (T, H, W, C), got {frames.dtype} {frames.shape}")
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()  # T, C, H, W
    n_frames, channels, height, width = video.shape
    factor = patch_size * merge_size
    new_h, new_w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    if (new_h, new_w) != (height, width):
        # On uint8 CPU tensors torchvision's bicubic resize calls exactly this kernel; PIL's bicubic differs by
        # up to ~1.5e-2 after normalisation, so frames must not go through the PIL image processor.
        video = torch.nn.functional.interpolate(
            video, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False
        )
    # The library fuses rescale (1/255) into normalise: (x - 255 * mean) / (255 * std) in float32.
    mean = torch.tensor(image_mean) * 255.0
    std = torch.tensor(image_std) * 255.0
    video = (video.to(torch.float32) - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)

    if pad := -n_frames % temporal_patch_size:  # repeat the last frame up to a whole temporal patch
        video = torch.cat([video, video[-1:].expand(pad, -1, -1, -1)])
    grid_t, grid_h, grid_w = video.shape[0] // temporal_patch_size, new_h // patch_size, new_w // patch_size
    m = merge_size
    patches = video.view(
        grid_t, temporal_patch_size, channels, grid_h // m, m, patch_size, grid_w // m, m, patch_size
    )
    # -> (t, h-block, w-block, h-in-block, w-in-block, C, temporal, patch_h, patch_w): merged 2x2 neighbours are
    # consecutive rows, which is the order the vision tower's patch merger expects.
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    flat = patches.reshape(grid_t * grid_h * grid_w, channels * temporal_patch_size * patch_size * patch_size)
    return {
        "pixel_values_videos": flat,
        "video_grid_thw": torch.tensor([[grid_t, grid_h, grid_w]], dtype=torch.int64),
        "second_per_grid_ts": [temporal_patch_size / fps],
        "num_tokens": grid_t * grid_h * grid_w // (m * m),
    }


def build_video_inputs(frames: np.ndarray, image_processor, fps: float = DEFAULT_FPS) -> dict:
    """`video_inputs` with patch sizes, normalisation and pixel bounds taken from a Qwen image processor, so a
    video frame is sized like an image of the same checkpoint."""
    size = dict(image_processor.size)
    # Real checkpoints allow huge single images (Qwen2.5-VL: 12.8M pixels); frames use the video processor's much
    # smaller per-frame bounds unless the checkpoint's image bounds are smaller still (tiny test models).
    return video_inputs(
        frames,
        min_pixels=min(size["shortest_edge"], VIDEO_MIN_PIXELS),
        max_pixels=min(size["longest_edge"], VIDEO_MAX_PIXELS),
        patch_size=image_processor.patch_size,
        temporal_patch_size=image_processor.temporal_patch_size,
        merge_size=image_processor.merge_size,
        image_mean=tuple(image_processor.image_mean),
        image_std=tuple(image_processor.image_std),
        fps=fps,
    )


def load_video_inputs(
    video: VideoRef, image_processor, num_frames: int = NUM_FRAMES, fps: float = DEFAULT_FPS
) -> dict:
    """Read, sample and build one video's model inputs (the scoring path's one call)."""
    return build_video_inputs(load_frames(video, num_frames), image_processor, fps=fps)
