"""The weight-free judge on the shapes world's own videos after an H.264 round trip."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.evaluate.shapes_judge import judge, read_clip
from pipelines.shapes.samples import ShapesWorldConfig, write_shapes_world
from pipelines.shapes.world import COLOURS, DIRECTIONS, SHAPES, random_scene
from storage.media import encode_mp4, read_frames, read_image


def _ground_truth(size: int, num_frames: int, count: int, seed: int):
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng, moving=True) for _ in range(count)]
    clips = [read_frames(encode_mp4(s.frames(size, size, num_frames), fps=8.0)) for s in scenes]
    return [s.caption for s in scenes], clips, scenes


@pytest.mark.parametrize("size, num_frames", [(32, 8), (64, 16)])
def test_judge_reads_the_generators_videos(size, num_frames):
    prompts, clips, _ = _ground_truth(size, num_frames, count=100, seed=size)
    scores = judge(prompts, clips)
    assert scores.num_clips == 100
    assert scores.colour_accuracy >= 0.98
    assert scores.shape_accuracy >= 0.98
    assert scores.direction_accuracy >= 0.98
    assert scores.consistency >= 0.9


def test_judge_scores_wrong_prompts_as_wrong():
    prompts, clips, scenes = _ground_truth(32, 8, count=40, seed=3)
    colours, shapes, directions = list(COLOURS), list(SHAPES), list(DIRECTIONS)
    wrong = [
        f"a {colours[(colours.index(s.colour) + 1) % 4]} {shapes[(shapes.index(s.shape) + 1) % 3]} "
        f"moving {directions[(directions.index(s.direction) + 1) % 4]}"
        for s in scenes
    ]
    scores = judge(wrong, clips)
    assert scores.colour_accuracy == scores.shape_accuracy == scores.direction_accuracy == 0.0


def test_noise_and_still_frames_are_not_a_shape_moving():
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8) for _ in range(20)]
    scores = judge(["a red circle moving left"] * 20, noise)
    assert scores.consistency < 0.5
    assert scores.direction_accuracy < 0.6
    blank = np.full((8, 32, 32, 3), 128, np.uint8)
    reading = read_clip(blank)
    assert (reading.colour, reading.shape, reading.direction, reading.consistency) == (None, None, None, 0.0)
    still = np.repeat(random_scene(rng, moving=False).render(32, 32)[None], 8, axis=0)
    assert read_clip(still).direction is None


def test_judge_reads_the_sample_images(tmp_path):
    written = write_shapes_world(tmp_path, ShapesWorldConfig(num_images=30, num_videos=0))
    scores = judge([w.caption for w in written], [read_image(w.path) for w in written])
    assert scores.colour_accuracy == scores.shape_accuracy == 1.0
    assert scores.direction_accuracy is None
