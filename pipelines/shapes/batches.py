"""Training batches drawn straight from the shapes world, shaped as ``pipelines.train.data``
decodes them, for the training loop without a catalog: the learning benchmark and test."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pipelines.shapes.samples import ShapesWorldConfig
from pipelines.shapes.world import random_scene
from pipelines.train.config import TrainConfig
from pipelines.train.data import clip_frame_indices


def shapes_batches(config: TrainConfig, seed: int, text: bool = True,
                   stage: str = "base") -> Iterator[dict[str, np.ndarray]]:
    """Endless batches of a video stage (the base by default): its ``num_frames`` frames of a
    moving-shape shot as the sample writer renders it, at an fps in the run's range from a random
    start (the data module's own frame picker). ``text=False`` gives every clip an empty caption."""
    rng = np.random.default_rng(seed)
    video, data, world = config.stage(stage), config.data, ShapesWorldConfig()
    index = 0
    while True:
        scenes = [random_scene(rng, moving=True) for _ in range(data.batch_size)]
        clips, rates = [], []
        for scene in scenes:
            fps = rng.uniform(data.fps_min, data.fps_max)
            indices, fps = clip_frame_indices(world.frames_per_shot, world.fps, video.num_frames, fps, rng.random())
            clips.append(scene.frames(video.width, video.height, world.frames_per_shot)[indices])
            rates.append(fps)
        count = len(scenes)
        yield {
            "index": np.arange(index, index + count),
            "key": np.array([f"shot-{index + i}" for i in range(count)], dtype=object),
            "pixels": np.stack(clips),
            "fps": np.array(rates, np.float32),
            "is_image": np.zeros(count, bool),
            "caption": np.array([s.caption if text else "" for s in scenes], dtype=object),
            "dropped": rng.random(count) < data.caption_dropout,
        }
        index += count
