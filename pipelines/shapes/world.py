"""The shapes world: one coloured shape on a plain grey background, still or moving.

Its words are the vocabulary of the demo's prompts ("a red circle moving left"); the sample
writer renders scenes from it and the judge reads the same words back out of a prompt, so
the two cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

# Saturated colours whose hues sit 60-120 degrees apart, so the judge tells them apart by hue
# even after H.264's chroma subsampling.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 190, 40),
    "blue": (40, 70, 230),
    "yellow": (235, 215, 30),
}
SHAPES = ("circle", "square", "triangle")
# (dx, dy) in image coordinates: y grows downwards
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


@dataclass(frozen=True)
class Scene:
    """One shot: where the shape is at its first frame and how far it travels by its last.

    Positions and sizes are fractions of the frame side, so a scene renders at any size."""

    colour: str
    shape: str
    size: float  # bounding-box side / frame side
    x: float  # centre at the first frame
    y: float
    background: int  # grey level 0..255
    direction: str | None = None  # None: a still image
    travel: float = 0.0  # centre displacement over the shot, fraction of the frame side

    @property
    def label(self) -> str:
        """The class label of a moving scene: ``"red circle moving left"``."""
        return f"{self.colour} {self.shape} moving {self.direction}" if self.direction else f"{self.colour} {self.shape}"

    @property
    def caption(self) -> str:
        return f"a {self.label}"

    def centre(self, t: float) -> tuple[float, float]:
        """Centre at time ``t`` in [0, 1] of the shot."""
        dx, dy = DIRECTIONS[self.direction] if self.direction else (0, 0)
        return self.x + dx * self.travel * t, self.y + dy * self.travel * t

    def render(self, width: int, height: int, t: float = 0.0) -> np.ndarray:
        """uint8 ``(height, width, 3)`` RGB frame at time ``t``."""
        frame = np.full((height, width, 3), self.background, np.uint8)
        cx, cy = self.centre(t)
        side = min(width, height)
        half = self.size * side / 2
        colour = COLOURS[self.colour]
        # cv2 draws in 1/16-pixel fixed point so sub-pixel motion stays smooth at 32x32
        shift, scale = 4, 16
        centre = (round(cx * width * scale), round(cy * height * scale))
        if self.shape == "circle":
            cv2.circle(frame, centre, round(half * scale), colour, -1, cv2.LINE_AA, shift)
        else:
            if self.shape == "square":
                corners = [(-half, -half), (half, -half), (half, half), (-half, half)]
            else:  # an upright triangle filling its bounding box
                corners = [(0.0, -half), (half, half), (-half, half)]
            points = np.array([[centre[0] + px * scale, centre[1] + py * scale] for px, py in corners], np.int32)
            cv2.fillPoly(frame, [points], colour, cv2.LINE_AA, shift)
        return frame

    def frames(self, width: int, height: int, num_frames: int) -> np.ndarray:
        """``(num_frames, height, width, 3)``: the shot from its first to its last position."""
        times = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
        return np.stack([self.render(width, height, float(t)) for t in times])


def random_scene(rng: np.random.Generator, moving: bool, size_range: tuple[float, float] = (0.3, 0.45),
                 travel_range: tuple[float, float] = (0.3, 0.9), colour: str | None = None,
                 shape: str | None = None, direction: str | None = None) -> Scene:
    """A scene with a random colour, shape, size, position, background and (if ``moving``)
    direction and speed, except what is given; ``travel_range`` is the share of the free
    room the shape crosses."""
    colour = colour or str(rng.choice(list(COLOURS)))
    shape = shape or str(rng.choice(SHAPES))
    size = float(rng.uniform(*size_range))
    # greys well away from every colour's brightness extremes: dark or light, never mid-saturated
    background = int(rng.choice([int(rng.uniform(15, 70)), int(rng.uniform(170, 235))]))
    low, high = size / 2 + 0.02, 1 - size / 2 - 0.02
    if not moving:
        return Scene(colour, shape, size, float(rng.uniform(low, high)), float(rng.uniform(low, high)), background)
    direction = direction or str(rng.choice(list(DIRECTIONS)))
    travel = float(rng.uniform(*travel_range)) * (high - low)
    dx, dy = DIRECTIONS[direction]
    # start where the whole path stays inside the frame
    along = float(rng.uniform(low, high - travel))
    across = float(rng.uniform(low, high))
    start = {-1: 1 - along, 1: along, 0: across}
    return Scene(colour, shape, size, start[dx], start[dy], background, direction, travel)


@dataclass(frozen=True)
class Expected:
    """What a prompt asks for; None where it does not say."""

    colour: str | None
    shape: str | None
    direction: str | None


_WORDS = re.compile(r"[a-z]+")


def parse_prompt(prompt: str) -> Expected:
    """The colour, shape and direction words of ``prompt`` ("a video of a red circle moving left.")."""
    words = _WORDS.findall(prompt.lower())

    def first(vocabulary) -> str | None:
        return next((w for w in words if w in vocabulary), None)

    return Expected(first(COLOURS), first(SHAPES), first(DIRECTIONS))


def shape_prompts(repeats: int = 1) -> list[str]:
    """Prompts covering every colour and direction ``repeats`` times, shapes in rotation."""
    prompts = []
    for r in range(repeats):
        for c, colour in enumerate(COLOURS):
            for d, direction in enumerate(DIRECTIONS):
                shape = SHAPES[(c + d + r) % len(SHAPES)]
                prompts.append(f"a {colour} {shape} moving {direction}")
    return prompts


def label_templates() -> dict[str, str]:
    """Caption of each class label for the curate captioner (``caption.templates``)."""
    return {f"{c} {s} moving {d}": f"a {c} {s} moving {d}" for c in COLOURS for s in SHAPES for d in DIRECTIONS}
