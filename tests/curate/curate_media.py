"""Test media with known content, shared by the curation tests."""

import numpy as np

FPS = 25
CUTS = (30, 75)
NUM_FRAMES = 140


def shot_frames(seed: int = 0, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """Three shots: solid red, a noise pattern, solid blue, changing at CUTS."""
    width, height = size
    frames = np.empty((NUM_FRAMES, height, width, 3), dtype=np.uint8)
    frames[: CUTS[0]] = (200, 30, 30)
    frames[CUTS[0] : CUTS[1]] = np.random.default_rng(seed).integers(0, 256, (height, width, 3))
    frames[CUTS[1] :] = (20, 40, 220)
    return frames


def moving_shots(seed: int = 0, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """Three shots of blocky textures panning 1 px a frame (real motion, not static, not jitter),
    changing at CUTS."""
    width, height = size
    frames = np.empty((NUM_FRAMES, height, width, 3), dtype=np.uint8)
    bounds = [0, *CUTS, NUM_FRAMES]
    for shot, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        blocks = np.random.default_rng((seed, shot)).integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
        texture = np.kron(blocks, np.ones((16, 16, 1), np.uint8))
        for i in range(start, end):
            frames[i] = np.roll(texture, i - start, axis=1)
    return frames
