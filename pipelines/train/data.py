"""Training samples from a ``clips`` table version, read and decoded by Ray Data.

The rows come through Ray Data's Lance reader (only the columns trained on; the stage's
filter and ``data.select`` pushed down to the scan as one predicate) and stay in Ray's object
store, sorted by id.

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
from functools import reduce
from typing import Any

import numpy as np
import pyarrow as pa
import ray
import ray.data
from PIL import Image
from ray.data.expressions import Expr, col

from pipelines.train.config import DataConfig, RowSelection
from storage.blobs import BlobStore
from storage.catalog import Catalog, TableSnapshot
from storage.errors import T2VError
from storage.location import StorageLocation
from storage.media import probe_image, read_frames, read_image
from storage.schemas import schema_for

ROW_FIELDS = ("id", "blob", "fps", "num_frames", "width", "height", "caption")
_NO_ROWS = pa.schema([schema_for("clips").field(name) for name in ROW_FIELDS]).empty_table()


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
class RowSource:
    """The rows one stream trains on: a pinned table version and the predicate pushed down to its scan."""

    table: TableSnapshot
    predicate: Expr | None
    what: str  # what the rows are, for errors: "captioned clips"

    def read(self) -> ray.data.Dataset:
        """The rows through Ray Data's Lance reader: only ``ROW_FIELDS`` and matching rows leave the files."""
        rows = ray.data.read_lance(self.table.uri, version=self.table.version, columns=list(ROW_FIELDS),
                                   storage_options=self.table.storage_options)
        # Ray's optimizer folds this filter into the Lance scan (read_lance's own filter= is deprecated)
        return rows if self.predicate is None else rows.filter(expr=self.predicate)


@dataclass(frozen=True)
class TrainingSources:
    videos: RowSource
    images: RowSource | None


@dataclass(frozen=True)
class TrainingRows:
    """Rows sorted by id, so sample ``i`` picks the same row however the table's files are laid out."""

    videos: pa.Table
    images: pa.Table


@dataclass(frozen=True)
class RowBlocks:
    """:class:`TrainingRows` as sorted Arrow blocks in Ray's object store: decode tasks map them, the
    driver only holds their references."""

    videos: list[ray.ObjectRef]
    images: list[ray.ObjectRef]

    def rows(self) -> TrainingRows:
        return TrainingRows(_concat(self.videos), _concat(self.images))


def training_sources(
    location: StorageLocation, data: DataConfig, *, captioned_only: bool = False, with_images: bool = False
) -> TrainingSources:
    """The clips version (and the image samples when the image ratio asks for them) a stage trains on:
    ``data.select`` and, with ``captioned_only``, a caption, as one predicate folded into each scan."""
    catalog = Catalog(location)
    if catalog.latest("clips") is None:
        raise TrainDataError(f"no clips table under {location.uri()}: curate videos first")
    captioned = [col("caption").is_not_null() & (col("caption") != "")] if captioned_only else []
    what = "captioned clips" if captioned_only else "clips"
    if selected := data.select.describe():
        what += f" matching data.select ({selected})"
    videos = RowSource(catalog.snapshot("clips", data.clips_version),
                       _all_of(captioned + _selection(data.select, clips=True)), what)
    images = None
    if with_images and catalog.latest("samples") is not None:
        images = RowSource(catalog.snapshot("samples", data.samples_version),
                           _all_of([col("kind") == "image", *captioned, *_selection(data.select, clips=False)]),
                           "images")
    return TrainingSources(videos, images)


def _selection(select: RowSelection, *, clips: bool) -> list[Expr]:
    """``select`` as conditions on the columns clips and samples share (``pseudo`` only on clips)."""
    conditions = []
    if select.sources is not None:
        conditions.append(_any_of([_from_source(source) for source in select.sources]))
    if select.labels is not None:
        conditions.append(_any_of([col("label") == label for label in select.labels]))
    if clips and select.pseudo is not None:
        conditions.append(col("pseudo") == select.pseudo)
    return conditions


def _from_source(source: str) -> Expr:
    """``source_uri`` is ``source`` or lies under it: a file below the folder or a member of the shard."""
    folder = source.rstrip("/")
    uri = col("source_uri")
    return (uri == folder) | _starts_with(uri, folder + "/") | _starts_with(uri, folder + "#")


def _starts_with(column: Expr, prefix: str) -> Expr:
    # As a range: the expression text of pyarrow's starts_with is no SQL that the Lance scan parses.
    return (column >= prefix) & (column < prefix[:-1] + chr(ord(prefix[-1]) + 1))


def _all_of(conditions: list[Expr]) -> Expr | None:
    return reduce(lambda a, b: a & b, conditions) if conditions else None


def _any_of(conditions: list[Expr]) -> Expr:
    return reduce(lambda a, b: a | b, conditions)


def training_rows(location: StorageLocation, sources: TrainingSources) -> TrainingRows:
    """The rows read in this process (one-process runs and tests), with the same predicates as on Ray."""
    catalog = Catalog(location)

    def read(source: RowSource | None) -> pa.Table:
        if source is None:
            return _NO_ROWS
        table = catalog.read(source.table.table, source.table.version, columns=list(ROW_FIELDS),
                             filter=None if source.predicate is None else _as_sql(source.predicate))
        return table.sort_by("id")

    rows = TrainingRows(read(sources.videos), read(sources.images))
    if not len(rows.videos):
        raise _nothing_to_train_on(sources.videos)
    return rows


def row_blocks(sources: TrainingSources) -> RowBlocks:
    """The rows read by Ray Data and kept in the object store, sorted by id (a distributed sort)."""

    def blocks(source: RowSource | None) -> tuple[list[ray.ObjectRef], int]:
        if source is None:
            return [], 0
        rows = source.read().sort("id").materialize()
        return rows.to_arrow_refs(), rows.count()

    videos, count = blocks(sources.videos)
    if not count:
        raise _nothing_to_train_on(sources.videos)
    return RowBlocks(videos, blocks(sources.images)[0])


def _as_sql(predicate: Expr) -> str:
    """The predicate as the SQL text Ray's Lance reader hands Lance (pyarrow's Substrait form of
    string comparisons is one Lance cannot read)."""
    return str(predicate.to_pyarrow())


def _nothing_to_train_on(source: RowSource) -> TrainDataError:
    return TrainDataError(f"the clips table (version {source.table.version}) has no {source.what} to train on")


def _concat(refs: list[ray.ObjectRef]) -> pa.Table:
    tables = [t for t in ray.get(refs) if t.num_rows]
    return pa.concat_tables(tables) if tables else _NO_ROWS


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


def _pick(rows: pa.Table, index: int, spec: SampleSpec, stream: int) -> dict:
    """Row of sample ``index``: each epoch over ``rows`` is a fresh permutation."""
    epoch, position = divmod(index, len(rows))
    return rows.slice(int(_rng(spec, stream, epoch).permutation(len(rows))[position]), 1).to_pylist()[0]


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
    is_image = len(rows.images) > 0 and rng.random() < spec.image_ratio
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
    location: StorageLocation, sources: TrainingSources, spec: SampleSpec, start: int, stop: int
) -> ray.data.Dataset:
    """Ray Dataset of samples ``start..stop-1`` (a resumed run starts past what it has seen)."""
    blocks = row_blocks(sources)
    indices = ray.data.range(stop - start).map_batches(lambda b: {"index": b["id"] + start}, batch_format="numpy")
    return indices.map_batches(
        _decode_from_blocks,
        fn_kwargs={"blocks": blocks, "spec": spec, "location": location},
        batch_size=4,
        batch_format="numpy",
    )


def _decode_from_blocks(batch: dict[str, np.ndarray], blocks: RowBlocks, spec: SampleSpec,
                        location: StorageLocation) -> dict[str, np.ndarray]:
    return decode_batch(batch, blocks.rows(), spec, location)


def local_batches(
    location: StorageLocation, rows: TrainingRows, spec: SampleSpec, start: int, stop: int, batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """The same samples without Ray, in order: for one-process runs and tests."""
    for first in range(start, stop - batch_size + 1, batch_size):
        yield decode_batch({"index": np.arange(first, first + batch_size)}, rows, spec, location)
