"""Training samples from a ``clips`` table version, decoded by Ray Data.

Sample ``i`` of a run is a pure function of ``i`` and the seed: which row (a fresh
permutation each epoch), video or image (LaVie's image ratio), the fps (Make-A-Video's
curriculum from high to low fps over the run), where the frames start and whether the
caption is dropped for classifier-free guidance. So the data position of a checkpoint
is one number, and a resumed run reads exactly the samples it had not yet seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray.data
from PIL import Image

from pipelines.train.config import DataConfig
from storage.blobs import BlobStore
from storage.catalog import Catalog
from storage.errors import T2VError
from storage.location import StorageLocation
from storage.media import probe_image, read_frames, read_image

ROW_FIELDS = ("id", "blob", "fps", "num_frames", "width", "height", "caption")


class TrainDataError(T2VError, ValueError):
    pass


@dataclass(frozen=True)
class SampleSpec:
    """What one stage's samples look like and how they are drawn."""

    num_frames: int
    width: int
    height: int
    fps_min: float
    fps_max: float
    curriculum_window: float
    image_ratio: float
    caption_dropout: float
    total_samples: int  # the run's length in samples: curriculum progress is index / total
    seed: int

    @classmethod
    def from_config(cls, data: DataConfig, stage: Any, total_samples: int, seed: int) -> "SampleSpec":
        return cls(
            num_frames=stage.num_frames,
            width=stage.width,
            height=stage.height,
            fps_min=data.fps_min,
            fps_max=data.fps_max,
            curriculum_window=data.curriculum_window,
            image_ratio=data.image_ratio,
            caption_dropout=data.caption_dropout,
            total_samples=total_samples,
            seed=seed,
        )


@dataclass(frozen=True)
class TrainingRows:
    videos: list[dict]
    images: list[dict]


def training_rows(
    location: StorageLocation, data: DataConfig, *, captioned_only: bool = False, with_images: bool = False
) -> TrainingRows:
    """Rows of the clips version (and image samples when the image ratio asks for them)."""
    catalog = Catalog(location)
    # projection and filters go down to the Lance scan: only the rows and columns trained on are read
    captioned = "caption IS NOT NULL AND caption <> ''" if captioned_only else None
    videos = catalog.read("clips", data.clips_version, columns=list(ROW_FIELDS), filter=captioned).to_pylist()
    images: list[dict] = []
    if with_images:
        only_images = " AND ".join(["kind = 'image'", *([captioned] if captioned else [])])
        images = catalog.read("samples", data.samples_version, columns=list(ROW_FIELDS), filter=only_images).to_pylist()
    if not videos:
        which = "captioned clips" if captioned_only else "clips"
        raise TrainDataError(f"the clips table (version {data.clips_version or 'latest'}) has no {which} to train on")
    return TrainingRows(videos, images)


def curriculum_fps(progress: float, u: float, spec: SampleSpec) -> float:
    """A band of width ``curriculum_window`` slides from the top of [fps_min, fps_max] at the
    start of the run to its bottom at the end: little motion first, more later."""
    span = spec.fps_max - spec.fps_min
    band = spec.curriculum_window * span
    high = spec.fps_max - min(max(progress, 0.0), 1.0) * (span - band)
    return high - band + u * band


def clip_frame_indices(
    clip_frames: int, clip_fps: float, want: int, fps: float, u: float
) -> tuple[np.ndarray, float]:
    """``want`` frame indices playing the clip at ``fps``, starting at a fraction ``u`` of the
    free room. A clip too short for ``want`` frames at ``fps`` is played faster to fit.
    Returns (indices, the fps actually used)."""
    duration = clip_frames / clip_fps
    if want > 1:
        fps = max(fps, (want - 1) / max(duration - 1 / clip_fps, 1e-6))
    span = (want - 1) / fps
    start = u * max(duration - 1 / clip_fps - span, 0.0)
    times = start + np.arange(want) / fps
    indices = np.minimum(np.floor(times * clip_fps + 1e-6).astype(np.int64), clip_frames - 1)
    return indices, fps


def cover_size(width: int, height: int, target_width: int, target_height: int) -> tuple[int, int]:
    """Smallest size with the source's aspect ratio that covers the target (then center-cropped)."""
    scale = max(target_width / width, target_height / height)
    return max(target_width, math.ceil(width * scale)), max(target_height, math.ceil(height * scale))


def center_crop(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(..., H, W, 3)`` -> ``(..., height, width, 3)`` around the middle."""
    top = (frames.shape[-3] - height) // 2
    left = (frames.shape[-2] - width) // 2
    return frames[..., top : top + height, left : left + width, :]


def _rng(spec: SampleSpec, *key: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, *key])


def _pick(rows: list[dict], index: int, spec: SampleSpec, stream: int) -> dict:
    """Row of sample ``index``: each epoch over ``rows`` is a fresh permutation."""
    epoch, position = divmod(index, len(rows))
    return rows[int(_rng(spec, stream, epoch).permutation(len(rows))[position])]


def _video_frames(
    row: dict, blobs: BlobStore, spec: SampleSpec, fps: float, u: float
) -> tuple[np.ndarray, np.ndarray, float]:
    indices, fps = clip_frame_indices(int(row["num_frames"]), float(row["fps"]), spec.num_frames, fps, u)
    size = cover_size(int(row["width"]), int(row["height"]), spec.width, spec.height)
    with blobs.local_path(row["blob"], suffix=".mp4") as path:
        frames = read_frames(path, indices, size=size)
    return center_crop(frames, spec.width, spec.height), indices, fps


def _image_frames(row: dict, blobs: BlobStore, spec: SampleSpec) -> np.ndarray:
    with blobs.local_path(row["blob"]) as path:
        info = probe_image(path)
        image = Image.fromarray(read_image(path)).resize(cover_size(info.width, info.height, spec.width, spec.height))
    still = center_crop(np.asarray(image.convert("RGB")), spec.width, spec.height)
    # An image row fills every frame slot with the still; the model skips its temporal
    # layers (is_image), so the frames are independent image samples.
    return np.repeat(still[None], spec.num_frames, axis=0)


def make_sample(index: int, rows: TrainingRows, spec: SampleSpec, blobs: BlobStore) -> dict[str, Any]:
    """Decode sample ``index``: uint8 frames ``(f, H, W, 3)`` plus its conditioning fields."""
    rng = _rng(spec, 0, index)
    is_image = bool(rows.images) and rng.random() < spec.image_ratio
    fps_draw, start_draw, drop_draw = rng.random(3)
    size = f"{spec.width}x{spec.height}"
    if is_image:
        row = _pick(rows.images, index, spec, stream=2)
        pixels, fps = _image_frames(row, blobs, spec), 0.0
        key = f"{row['id']}|{size}|still"
    else:
        row = _pick(rows.videos, index, spec, stream=1)
        fps = curriculum_fps(index / max(spec.total_samples, 1), fps_draw, spec)
        pixels, indices, fps = _video_frames(row, blobs, spec, fps, start_draw)
        key = f"{row['id']}|{size}|{','.join(map(str, indices))}"
    return {
        "index": index,
        "key": key,  # what the frames are, for caching their latents
        "pixels": pixels,
        "fps": np.float32(fps),
        "is_image": is_image,
        "caption": row["caption"] or "",
        "dropped": bool(drop_draw < spec.caption_dropout),
    }


def decode_batch(
    batch: dict[str, np.ndarray], rows: TrainingRows, spec: SampleSpec, location: StorageLocation
) -> dict[str, np.ndarray]:
    """Ray Data ``map_batches`` function: sample indices -> decoded samples, column-wise."""
    blobs = BlobStore(location)
    samples = [make_sample(int(i), rows, spec, blobs) for i in batch["index"]]
    columns = {key: [s[key] for s in samples] for key in samples[0]}
    strings = ("caption", "key")
    return {key: np.array(value, dtype=object) if key in strings else np.stack(value) for key, value in columns.items()}


def training_dataset(
    location: StorageLocation, rows: TrainingRows, spec: SampleSpec, start: int, stop: int
) -> ray.data.Dataset:
    """Ray Dataset of samples ``start..stop-1`` (a resumed run starts past what it has seen)."""
    indices = ray.data.range(stop - start).map_batches(lambda b: {"index": b["id"] + start}, batch_format="numpy")
    return indices.map_batches(
        decode_batch,
        fn_kwargs={"rows": rows, "spec": spec, "location": location},
        batch_size=4,
        batch_format="numpy",
    )


def local_batches(
    location: StorageLocation, rows: TrainingRows, spec: SampleSpec, start: int, stop: int, batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """The same samples without Ray, in order: for one-process runs and tests."""
    for first in range(start, stop - batch_size + 1, batch_size):
        yield decode_batch({"index": np.arange(first, first + batch_size)}, rows, spec, location)
