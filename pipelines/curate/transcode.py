"""Transcode: resample a clip to the target fps, resize keeping aspect, encode H.264 mp4."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

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


@dataclass(frozen=True)
class _Resize:
    """How frames of one source size reach the box: scale to ``scaled``, then crop to ``out``."""

    scaled: tuple[int, int]
    out: tuple[int, int]
    interpolation: int

    @classmethod
    def plan(cls, width: int, height: int, size: tuple[int, int], center_crop: bool) -> "_Resize | None":
        out_w, out_h = output_size(width, height, size, center_crop)
        if center_crop:
            scale = max(out_w / width, out_h / height)
            scaled = (max(out_w, round(width * scale)), max(out_h, round(height * scale)))
        else:
            scaled = (out_w, out_h)
        if scaled == (width, height) and (out_w, out_h) == (width, height):
            return None
        shrinking = scaled[0] * scaled[1] < width * height
        return cls(scaled, (out_w, out_h), cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        scaled = cv2.resize(frame, self.scaled, interpolation=self.interpolation)
        x0, y0 = (self.scaled[0] - self.out[0]) // 2, (self.scaled[1] - self.out[1]) // 2
        return scaled[y0 : y0 + self.out[1], x0 : x0 + self.out[0]]


def resize_frames(frames: np.ndarray, size: tuple[int, int], center_crop: bool = False) -> np.ndarray:
    """uint8 ``(n, h, w, 3)`` -> frames fitting the ``(width, height)`` box, aspect kept, even sizes.

    ``center_crop`` scales to cover the box and crops the overflow symmetrically, so the output is
    exactly the (even) box; otherwise the whole frame is kept and fits inside the box.
    """
    resize = _Resize.plan(frames.shape[2], frames.shape[1], size, center_crop)
    return frames if resize is None else np.stack([resize(frame) for frame in frames])


def transcode_frames(frames: Sequence[np.ndarray], src_fps: float, config: TranscodeConfig) -> list[np.ndarray]:
    """The frames a clip keeps at ``config.fps`` and ``config.size`` (before encoding).

    A list of per-frame arrays: frames that need no resizing stay views of the decoded ones.
    """
    indices = resample_indices(len(frames), src_fps, config.fps) if src_fps > config.fps else range(len(frames))
    height, width = frames[0].shape[:2]
    resize = _Resize.plan(width, height, config.size, config.center_crop)
    return [frames[i] if resize is None else resize(frames[i]) for i in indices]


def output_fps(src_fps: float, config: TranscodeConfig) -> float:
    """Clips slower than the target keep their own rate; duplicating frames would fake motion."""
    return min(src_fps, config.fps)


def encode_clip(frames: Sequence[np.ndarray], fps: float, config: TranscodeConfig) -> bytes:
    """H.264 mp4 bytes of frames already at the clip's fps and size, with the configured encoder settings."""
    return encode_mp4(frames, fps, crf=config.crf, preset=config.preset)


def transcode_clip(frames: Sequence[np.ndarray], src_fps: float, config: TranscodeConfig) -> bytes:
    """H.264 mp4 bytes of a clip at the configured fps and size."""
    return encode_clip(transcode_frames(frames, src_fps, config), output_fps(src_fps, config), config)
