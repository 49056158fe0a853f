"""Frame helpers shared by the stages: keyframe choice, colour order, batch columns.

Batch contract for the model stages (Ray Data ``map_batches(batch_format="numpy")``): the column
``keyframes`` holds, per row, uint8 frames ``(k, h, w, 3)`` in RGB (an image is ``k = 1``). The
column may be one 5-D array when all rows share a shape, or an object array of 4-D arrays when
they do not (Ray Data's variable-shaped tensors); the stages iterate rows, so both work.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import cv2
import numpy as np

KEYFRAMES = "keyframes"


def keyframe_indices(num_frames: int, k: int) -> np.ndarray:
    """``k`` frame indices at the centres of ``k`` equal segments (fewer if the clip is shorter)."""
    if num_frames <= 0:
        raise ValueError("a clip needs at least one frame")
    k = min(k, num_frames)
    return np.floor((np.arange(k) + 0.5) * num_frames / k).astype(np.int64)


def select_keyframes(frames: np.ndarray, k: int) -> np.ndarray:
    return frames[keyframe_indices(len(frames), k)]


def as_frame_stack(item: np.ndarray) -> np.ndarray:
    """One row of the ``keyframes`` column as uint8 ``(k, h, w, 3)``; a single image gets ``k = 1``."""
    frames = np.asarray(item)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (k, h, w, 3), got {frames.dtype} {frames.shape}")
    return frames


def iter_frame_stacks(batch: dict[str, np.ndarray], column: str = KEYFRAMES) -> Iterator[np.ndarray]:
    for item in batch[column]:
        yield as_frame_stack(item)


def object_column(values: Sequence) -> np.ndarray:
    """A 1-D object array, even when the items are same-shaped arrays numpy would stack."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def batch_length(batch: dict[str, np.ndarray]) -> int:
    return len(next(iter(batch.values())))


def rgb_to_bgr(frame: np.ndarray) -> np.ndarray:
    """OpenCV-based models (scenedetect, nudenet) expect BGR; a new contiguous array, not a view.

    OpenCV swaps the channels about three times faster than numpy copies a reversed-stride view.
    """
    return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)


def stable_seed(*parts: object) -> int:
    """A seed that is the same in every process for the same parts (``hash()`` is salted per process)."""
    import hashlib

    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")
