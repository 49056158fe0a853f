"""Transcode: resample a clip to the target fps, resize keeping aspect, encode H.264 mp4."""

from __future__ import annotations

import cv2
import numpy as np

from pipelines.curate.config import TranscodeConfig
from storage.media import encode_mp4, resample_indices


def _even(value: float) -> int:
    # yuv420p stores chroma at half resolution, so H.264 needs even sizes.
    return max(2, int(round(value / 2.0)) * 2)


def output_size(width: int, height: int, size: tuple[int, int], center_crop: bool) -> tuple[int, int]:
    """(width, height) of the frames after :func:`resize_frames`."""
    box_w, box_h = size
    if center_crop:
        return _even_floor(box_w), _even_floor(box_h)
    # fit inside the box, never upscale: a small source stays small rather than blurry.
    scale = min(box_w / width, box_h / height, 1.0)
    return _even(width * scale), _even(height * scale)


def _even_floor(value: int) -> int:
    return max(2, value - value % 2)


def resize_frames(frames: np.ndarray, size: tuple[int, int], center_crop: bool = False) -> np.ndarray:
    """uint8 ``(n, h, w, 3)`` -> frames fitting the ``(width, height)`` box, aspect kept, even sizes.

    ``center_crop`` scales to cover the box and crops the overflow symmetrically, so the output is
    exactly the (even) box; otherwise the whole frame is kept and fits inside the box.
    """
    n, height, width, _ = frames.shape
    out_w, out_h = output_size(width, height, size, center_crop)
    if center_crop:
        scale = max(out_w / width, out_h / height)
        scaled_w, scaled_h = max(out_w, round(width * scale)), max(out_h, round(height * scale))
    else:
        scaled_w, scaled_h = out_w, out_h
    if (scaled_w, scaled_h) == (width, height) and (out_w, out_h) == (width, height):
        return frames
    shrinking = scaled_w * scaled_h < width * height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    x0, y0 = (scaled_w - out_w) // 2, (scaled_h - out_h) // 2
    out = np.empty((n, out_h, out_w, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        scaled = cv2.resize(frame, (scaled_w, scaled_h), interpolation=interpolation)
        out[i] = scaled[y0 : y0 + out_h, x0 : x0 + out_w]
    return out


def transcode_frames(frames: np.ndarray, src_fps: float, config: TranscodeConfig) -> np.ndarray:
    """The frames a clip keeps at ``config.fps`` and ``config.size`` (before encoding)."""
    indices = resample_indices(len(frames), src_fps, config.fps) if src_fps > config.fps else np.arange(len(frames))
    return resize_frames(frames[indices], config.size, config.center_crop)


def output_fps(src_fps: float, config: TranscodeConfig) -> float:
    """Clips slower than the target keep their own rate; duplicating frames would fake motion."""
    return min(src_fps, config.fps)


def transcode_clip(frames: np.ndarray, src_fps: float, config: TranscodeConfig) -> bytes:
    """H.264 mp4 bytes of a clip at the configured fps and size."""
    return encode_mp4(transcode_frames(frames, src_fps, config), output_fps(src_fps, config), crf=config.crf)
