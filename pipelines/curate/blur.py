"""Blur score: variance of the Laplacian (Pech-Pacheco et al., 2000), the example stage of the README.

A sharp frame has strong edges, so its Laplacian varies a lot; a defocused or motion-blurred one
is smooth and scores low (a flat frame scores 0). The score is taken in the cut task on the frames
as stored (``transcode.size``), on ``blur.num_frames`` frames spread over the clip, and the clip
gets their median, so one frame blurred by a quick pan does not decide. Like every stage, this one
file declares its config block (``curate.blur``: ``num_frames`` computes, ``min_score`` keeps), the
column it stores and the rule; being in the job's list of stages is its registration.
"""

from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np
import pyarrow as pa

from pipelines.curate.config import BlurConfig
from pipelines.curate.frames import keyframe_indices
from pipelines.curate.stage import FRAMES, Stage, score


def laplacian_variance(frame: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian of a uint8 RGB frame's luma."""
    return float(cv2.Laplacian(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


class BlurFilter(Stage):
    name = block = "blur"
    config_class = BlurConfig
    runs_in = "cut"
    columns = (("blur_score", pa.float64()),)

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        scores = [np.median([laplacian_variance(frames[i]) for i in keyframe_indices(len(frames), self.config.num_frames)])
                  for frames in batch[FRAMES]]
        return {**batch, "blur_score": np.array(scores, dtype=np.float64)}

    def keep(self, row: Mapping[str, Any]) -> str | None:
        value = score(row, "blur_score")
        return "blurry" if value is not None and value < self.config.min_score else None
