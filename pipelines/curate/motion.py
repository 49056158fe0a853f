"""Motion score: how much a clip moves, from small grayscale frames sampled at a fixed rate.

``frame_diff`` is the mean absolute difference of consecutive samples (0..1 of the intensity
range); ``flow`` is the mean Farneback optical-flow magnitude as a fraction of the frame diagonal.
Both sample at ``sample_fps`` so a score does not depend on the source frame rate, and a static
clip (compression noise only) scores below ~0.001.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import pyarrow as pa

from pipelines.curate.config import MotionConfig
from pipelines.curate.stage import FRAMES, Stage, score
from storage.media import resample_indices


def _small_gray(frames: Sequence[np.ndarray], short_side: int) -> np.ndarray:
    height, width = frames[0].shape[:2]
    scale = min(1.0, short_side / min(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA) for f in frames])


def _frame_diff(gray: np.ndarray) -> np.ndarray:
    diffs = np.abs(np.diff(gray.astype(np.int16), axis=0))
    return diffs.mean(axis=(1, 2)) / 255.0


def _flow(gray: np.ndarray) -> np.ndarray:
    diagonal = float(np.hypot(*gray.shape[1:3]))
    magnitudes = []
    for prev, nxt in zip(gray[:-1], gray[1:]):
        flow = cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        magnitudes.append(np.linalg.norm(flow, axis=-1).mean() / diagonal)
    return np.asarray(magnitudes)


def motion_score(frames: Sequence[np.ndarray], fps: float, config: MotionConfig) -> float:
    """Motion of uint8 RGB frames ``(h, w, 3)`` played at ``fps``; 0.0 for a single frame."""
    indices = resample_indices(len(frames), fps, config.sample_fps) if fps > config.sample_fps else np.arange(len(frames))
    if len(indices) < 2:
        # a clip shorter than one sample step: compare its first and last frames
        indices = np.unique([0, len(frames) - 1])
    if len(indices) < 2:
        return 0.0
    gray = _small_gray([frames[i] for i in indices], config.short_side)
    per_step = _flow(gray) if config.method == "flow" else _frame_diff(gray)
    return float(per_step.mean())


class MotionFilter(Stage):
    """``motion_score`` of each clip, scored on its frames in the cut task; drops static and
    jittery clips."""

    name = block = "motion"
    config_class = MotionConfig
    runs_in = "cut"
    columns = (("motion_score", pa.float64()),)

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        scores = [motion_score(frames, fps, self.config) for frames, fps in zip(batch[FRAMES], batch["fps"])]
        return {**batch, "motion_score": np.array(scores, dtype=np.float64)}

    def keep(self, row: Mapping[str, Any]) -> str | None:
        value = score(row, "motion_score")
        if value is None:
            return None
        if value < self.config.min_score:
            return "static"
        if value > self.config.max_score:
            return "jittery"
        return None
