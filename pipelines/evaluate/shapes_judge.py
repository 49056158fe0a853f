"""A judge of shapes-world videos that needs no learned weights: it reads the answer off the pixels.

Per clip: the background is the median colour of the frame borders; each pixel's foreground
weight (alpha) is its RGB distance to the background over the distance of the clip's most
distinct pixels, so antialiased and codec-blurred edges count in part. Colour is the hue of the
foreground (saturation-weighted circular mean), shape the fill ratio of its soft bounding box
(square 1, circle pi/4, triangle 1/2), motion the least-squares slope of the alpha-weighted
centroid over the frames. Per prompt set: colour, shape and direction accuracy against the words
of each prompt (chance 1/4, 1/3, 1/4) and frame-to-frame consistency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.shapes.world import COLOURS, DIRECTIONS, SHAPES, parse_prompt

# fill ratio thresholds halfway between triangle (0.5), circle (0.785) and square (1.0)
_TRIANGLE_CIRCLE, _CIRCLE_SQUARE = 0.64, 0.89
# below this share of the frame side the centroid has not moved: no direction
MIN_TRAVEL = 0.04
# pixels nearer the background than this (RGB distance) are background whatever the clip
MIN_CONTRAST = 40.0
# a frame whose foreground covers less than this share of it shows no shape
MIN_AREA = 0.003


def _hue(rgb: tuple[int, int, int]) -> float:
    pixel = np.array([[rgb]], np.float32) / 255
    return float(cv2.cvtColor(pixel, cv2.COLOR_RGB2HSV)[0, 0, 0])


HUES = {name: _hue(rgb) for name, rgb in COLOURS.items()}  # degrees


@dataclass(frozen=True)
class FrameReading:
    colour: str | None
    shape: str | None
    area: float  # soft foreground area, share of the frame
    centroid: tuple[float, float] | None  # (x, y), share of the frame width / height


@dataclass(frozen=True)
class ClipReading:
    colour: str | None
    shape: str | None
    direction: str | None
    consistency: float  # mean over consecutive frame pairs, 1 = same shape, colour and size throughout
    frames: tuple[FrameReading, ...]


def _nearest_colour(hue: float) -> str:
    return min(HUES, key=lambda name: min(abs(hue - HUES[name]), 360 - abs(hue - HUES[name])))


def _shape_of(fill: float) -> str:
    return "triangle" if fill < _TRIANGLE_CIRCLE else "circle" if fill < _CIRCLE_SQUARE else "square"


def _circular_mean(hue: np.ndarray, weight: np.ndarray) -> float:
    angle = np.deg2rad(hue)
    return float(np.rad2deg(math.atan2(float((weight * np.sin(angle)).sum()), float((weight * np.cos(angle)).sum()))) % 360)


def _alpha(frames: np.ndarray) -> np.ndarray:
    """``(f, h, w)`` foreground weight in [0, 1] of uint8 ``(f, h, w, 3)`` frames."""
    pixels = frames.astype(np.float32)
    border = np.concatenate([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]], axis=1)
    background = np.median(border.reshape(-1, 3), axis=0)
    distance = np.linalg.norm(pixels - background, axis=-1)
    full = max(float(np.percentile(distance, 99.5)), MIN_CONTRAST)
    return np.clip((distance - MIN_CONTRAST / 2) / (full - MIN_CONTRAST / 2), 0.0, 1.0)


def _read_frame(rgb: np.ndarray, alpha: np.ndarray) -> FrameReading:
    height, width = alpha.shape
    area = float(alpha.sum())
    if area < MIN_AREA * height * width:
        return FrameReading(None, None, area / (height * width), None)
    hsv = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2HSV)
    colour = _nearest_colour(_circular_mean(hsv[..., 0], alpha * hsv[..., 1]))
    # soft extents: a column's (row's) largest alpha, summed, is the shape's width (height)
    soft_width, soft_height = float(alpha.max(axis=0).sum()), float(alpha.max(axis=1).sum())
    ys, xs = np.mgrid[0:height, 0:width]
    centroid = (float((alpha * (xs + 0.5)).sum()) / area / width, float((alpha * (ys + 0.5)).sum()) / area / height)
    return FrameReading(colour, _shape_of(area / (soft_width * soft_height)), area / (height * width), centroid)


def _majority(values: Sequence[str | None]) -> str | None:
    present = [v for v in values if v is not None]
    return max(sorted(set(present)), key=present.count) if present else None


def _direction(frames: Sequence[FrameReading]) -> str | None:
    track = [(t, f.centroid) for t, f in enumerate(frames) if f.centroid is not None]
    if len(track) < 2:
        return None
    times = np.array([t for t, _ in track], np.float64)
    points = np.array([c for _, c in track], np.float64)
    slope = np.polyfit(times, points, 1)[0] * (len(frames) - 1)  # (dx, dy) over the clip
    if np.abs(slope).max() < MIN_TRAVEL:
        return None
    axis = int(np.argmax(np.abs(slope)))
    step = [0, 0]
    step[axis] = int(np.sign(slope[axis]))
    return next(name for name, d in DIRECTIONS.items() if list(d) == step)


def _consistency(frames: Sequence[FrameReading]) -> float:
    if len(frames) < 2:
        return 1.0 if frames and frames[0].shape else 0.0
    scores = []
    for a, b in zip(frames, frames[1:]):
        same = a.shape is not None and (a.colour, a.shape) == (b.colour, b.shape)
        scores.append(min(a.area, b.area) / max(a.area, b.area) if same else 0.0)
    return float(np.mean(scores))


def read_clip(frames: np.ndarray) -> ClipReading:
    """What uint8 ``(f, h, w, 3)`` frames (or one ``(h, w, 3)`` image) show."""
    frames = frames[None] if frames.ndim == 3 else frames
    alpha = _alpha(frames)
    readings = tuple(_read_frame(rgb, a) for rgb, a in zip(frames, alpha))
    return ClipReading(
        colour=_majority([r.colour for r in readings]),
        shape=_majority([r.shape for r in readings]),
        direction=_direction(readings),
        consistency=_consistency(readings),
        frames=readings,
    )


# Accuracy of a judge that guesses: one over the size of each vocabulary.
CHANCE = {"colour_accuracy": 1 / len(COLOURS), "shape_accuracy": 1 / len(SHAPES),
          "direction_accuracy": 1 / len(DIRECTIONS)}
ATTRIBUTES = ("colour", "shape", "direction")


@dataclass(frozen=True)
class ClipJudgement:
    """Whether one clip shows each attribute its prompt names (None: the prompt does not name it)."""

    colour: bool | None
    shape: bool | None
    direction: bool | None
    consistency: float


def names_an_attribute(prompt: str) -> bool:
    expected = parse_prompt(prompt)
    return any(getattr(expected, attribute) is not None for attribute in ATTRIBUTES)


def judge_clip(prompt: str, clip: np.ndarray) -> ClipJudgement:
    """Score one clip against the colour, shape and direction words of its prompt."""
    expected, reading = parse_prompt(prompt), read_clip(clip)
    outcomes = {attribute: None if getattr(expected, attribute) is None
                else getattr(reading, attribute) == getattr(expected, attribute) for attribute in ATTRIBUTES}
    return ClipJudgement(**outcomes, consistency=reading.consistency)


@dataclass(frozen=True)
class ShapesScores:
    """Accuracies over the prompts that name the attribute (None when none does)."""

    colour_accuracy: float | None
    shape_accuracy: float | None
    direction_accuracy: float | None
    consistency: float
    num_clips: int

    @classmethod
    def of(cls, judgements: Sequence[ClipJudgement]) -> "ShapesScores":
        if not judgements:
            raise ValueError("the shapes judge needs at least one clip")

        def accuracy(attribute: str) -> float | None:
            outcomes = [getattr(j, attribute) for j in judgements if getattr(j, attribute) is not None]
            return sum(outcomes) / len(outcomes) if outcomes else None

        return cls(*(accuracy(attribute) for attribute in ATTRIBUTES),
                   float(np.mean([j.consistency for j in judgements])), len(judgements))

    def as_dict(self) -> dict[str, float | None]:
        return {"colour_accuracy": self.colour_accuracy, "shape_accuracy": self.shape_accuracy,
                "direction_accuracy": self.direction_accuracy, "consistency": self.consistency}


def judge(prompts: Sequence[str], clips: Sequence[np.ndarray]) -> ShapesScores:
    """Score each clip against the colour, shape and direction words of its prompt."""
    if len(prompts) != len(clips):
        raise ValueError(f"{len(prompts)} prompts but {len(clips)} clips")
    return ShapesScores.of([judge_clip(prompt, clip) for prompt, clip in zip(prompts, clips)])
