"""Sample media of the shapes world as real files and a manifest that ``t2v ingest`` reads.

Still images (PNG) carry a caption ("a red circle"); H.264 videos of one moving shape carry a
class label ("red circle moving left") that curation's label captioner turns into a caption; a
share of the videos has neither (the text-free path), and some join two shots of the same class
with a hard cut (new background, size and position) so the split stage has a cut to find.
Everything is a function of the seed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipelines.shapes.world import Scene, random_scene
from storage.media import write_image, write_mp4


class ShapesWorldConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    num_images: int = Field(48, ge=0)
    num_videos: int = Field(32, ge=0)
    # curation's size filter keeps a short side of 128 by default
    size: int = Field(128, ge=16, description="side of the square frames, even")
    fps: float = Field(12.0, gt=0)
    shot_seconds: float = Field(2.5, gt=0, description="one shot; curation keeps clips of 2 s or more")
    text_free_share: float = Field(0.25, ge=0, le=1, description="videos with neither caption nor label")
    cut_share: float = Field(0.25, ge=0, le=1, description="videos joining two shots with a hard cut")
    seed: int = 0

    @property
    def frames_per_shot(self) -> int:
        return max(2, round(self.shot_seconds * self.fps))


@dataclass(frozen=True)
class WrittenSample:
    path: Path
    caption: str | None
    label: str | None
    scenes: tuple[Scene, ...]  # one per shot


MANIFEST = "shapes.csv"


def write_shapes_world(folder: str | Path, config: ShapesWorldConfig | None = None) -> list[WrittenSample]:
    """Write the images, videos and ``<folder>/shapes.csv`` (path, caption, label)."""
    config = config or ShapesWorldConfig()
    if config.size % 2:
        raise ValueError("shapes world size must be even (H.264 yuv420p)")
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    written: list[WrittenSample] = []
    for index in range(config.num_images):
        scene = random_scene(rng, moving=False)
        path = folder / "images" / f"shape-{index:04d}.png"
        write_image(path, scene.render(config.size, config.size))
        written.append(WrittenSample(path, scene.caption, None, (scene,)))
    for index in range(config.num_videos):
        scene = random_scene(rng, moving=True)
        scenes = [scene]
        if rng.random() < config.cut_share:
            # the same class in a new shot, so the label stays true of both pieces
            same = dict(colour=scene.colour, shape=scene.shape, direction=scene.direction)
            other = random_scene(rng, moving=True, **same)
            while abs(other.background - scene.background) < 100:  # a cut the content detector sees
                other = random_scene(rng, moving=True, **same)
            scenes.append(other)
        text_free = rng.random() < config.text_free_share
        frames = np.concatenate([s.frames(config.size, config.size, config.frames_per_shot) for s in scenes])
        path = folder / "videos" / f"shape-{index:04d}.mp4"
        write_mp4(path, frames, config.fps)
        written.append(WrittenSample(path, None, None if text_free else scene.label, tuple(scenes)))
    with (folder / MANIFEST).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "caption", "label"])
        for sample in written:
            writer.writerow([sample.path.relative_to(folder).as_posix(), sample.caption or "", sample.label or ""])
    return written
