"""Pseudo-videos (VidRD): a still image becomes a short clip by a smooth zoom-and-pan camera.

The camera is a crop window of the output's aspect ratio. Its size and centre move from a random
start to a random end along one eased curve. The window is inside the image at both ends, and
"inside" is a set of linear constraints on (centre, size), so every in-between window (the same
convex blend of the two) is inside too: no frame ever shows a border.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipelines.curate.config import PseudoVideoConfig


def _ease(t: np.ndarray) -> np.ndarray:
    # smoothstep: zero velocity at both ends, so the camera starts and stops gently
    return t * t * (3.0 - 2.0 * t)


def camera_path(image_size: tuple[int, int], config: PseudoVideoConfig, rng: np.random.Generator) -> np.ndarray:
    """Crop windows ``(num_frames, 4)`` as ``x0, y0, width, height`` in image pixels (float)."""
    width, height = image_size
    aspect = config.size[0] / config.size[1]
    # zoom 1 = the largest window of the output aspect that fits the image
    base_w = min(width, height * aspect)
    zoom_start, zoom_end = rng.uniform(*config.zoom_range, size=2)
    size_start = np.array([base_w, base_w / aspect]) / zoom_start
    size_end = np.array([base_w, base_w / aspect]) / zoom_end
    bounds = np.array([width, height], dtype=np.float64)

    center_start = rng.uniform(size_start / 2, bounds - size_start / 2)
    duration = config.num_frames / config.fps
    angle = rng.uniform(0, 2 * np.pi)
    pan = config.pan_speed * duration * bounds * np.array([np.cos(angle), np.sin(angle)])
    center_end = np.clip(center_start + pan, size_end / 2, bounds - size_end / 2)

    s = _ease(np.linspace(0.0, 1.0, config.num_frames))[:, None]
    sizes = (1 - s) * size_start + s * size_end
    centers = (1 - s) * center_start + s * center_end
    return np.concatenate([centers - sizes / 2, sizes], axis=1)


def render_path(image: np.ndarray, boxes: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Sub-pixel crops of ``image`` along ``boxes``, each resized to ``out_size`` (width, height)."""
    out_w, out_h = out_size
    # Shrink the image once (area filter) so that the widest window maps to about the output
    # size: the per-frame bilinear warp then never minifies much, and fine texture does not alias.
    shrink = min(1.0, out_w / boxes[:, 2].max())
    if shrink < 1.0:
        height, width = image.shape[:2]
        new_w, new_h = max(1, round(width * shrink)), max(1, round(height * shrink))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        boxes = boxes * np.array([new_w / width, new_h / height, new_w / width, new_h / height])
    frames = np.empty((len(boxes), out_h, out_w, 3), dtype=np.uint8)
    for i, (x0, y0, w, h) in enumerate(boxes):
        sx, sy = w / out_w, h / out_h
        # output pixel centre (u + 0.5) lands on x0 + (u + 0.5) * sx in continuous image coordinates
        inverse = np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]])
        # replicate, not a constant colour: a half-pixel overhang at a window edge stays invisible
        frames[i] = cv2.warpAffine(image, inverse, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return frames


def pseudo_video(image: np.ndarray, config: PseudoVideoConfig, seed: int) -> np.ndarray:
    """uint8 RGB image ``(h, w, 3)`` -> clip ``(num_frames, out_h, out_w, 3)``; same seed, same clip."""
    boxes = camera_path((image.shape[1], image.shape[0]), config, np.random.default_rng(seed))
    return render_path(image, boxes, config.size)
