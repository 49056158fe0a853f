"""Stage A worker: samples -> clips.

A video is decoded once, in chunks, at its transcode size; the frames feed the shot
detector and the clips are cut from the same frames as soon as their shot is closed,
so memory holds one chunk plus the open shot (long shots are cut into pieces as they
grow). An image becomes a pseudo-video by zoom and pan. Each clip is encoded to
H.264, stored in the blob store, and run through the job's ``cut`` stages (motion, blur,
perceptual hash) while its frames are in memory.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.curate.config import CurateConfig
from pipelines.curate.frames import object_column, stable_seed
from pipelines.curate.pseudo_video import pseudo_video
from pipelines.curate.split import ShotDetector, clip_ranges
from pipelines.curate.stage import FRAMES, Stage, set_up, stored_schema
from pipelines.curate.transcode import encode_clip, output_fps, output_size, transcode_frames
from pipelines.curate.workdir import StageParts
from storage import media
from storage.blobs import BlobStore
from storage.ids import stable_id
from storage.location import StorageLocation

STAGE = "curate.cut"

# One schema for every outcome, so a part file records finished samples even when they gave no
# clip; the cut stages' columns follow (cut_schema).
OUTCOME_FIELDS = (
    [
        ("status", pa.string()),  # clip | dropped | quarantine
        ("sample_id", pa.string()),
        ("id", pa.string()),
        ("reason", pa.string()),
        ("error", pa.string()),
        ("source_uri", pa.string()),
        ("blob", pa.string()),
        ("pseudo", pa.bool_()),
        ("start_frame", pa.int64()),
        ("end_frame", pa.int64()),
        ("start_time", pa.float64()),
        ("end_time", pa.float64()),
        ("fps", pa.float64()),
        ("num_frames", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("duration", pa.float64()),
        ("source_width", pa.int32()),
        ("source_height", pa.int32()),
        ("caption", pa.string()),
        ("label", pa.string()),
    ]
)


def cut_schema(stages: Sequence[Stage]) -> pa.Schema:
    return pa.schema([*OUTCOME_FIELDS, *stored_schema(stages)])


def cut_batch(batch: pa.Table, location: StorageLocation, config: CurateConfig, stages: Sequence[Stage],
              parts: StageParts, salt: str) -> pa.Table:
    """Ray Data function: sample rows -> every outcome written to ``parts``; the clips are returned.

    ``stages`` are the cut stages; a task is short-lived, so each task sets them up (they load nothing).
    """
    blobs = BlobStore(location)
    stages = set_up(stages)
    rows: list[dict[str, Any]] = []
    for sample in batch.to_pylist():
        rows += cut_sample(sample, blobs, config, stages, salt)
    outcomes = pa.Table.from_pylist(rows, schema=cut_schema(stages))
    parts.write(outcomes)
    return outcomes.filter(pc.equal(outcomes.column("status"), "clip"))


def cut_sample(sample: dict, blobs: BlobStore, config: CurateConfig, stages: Sequence[Stage], salt: str) -> list[dict[str, Any]]:
    """Every outcome of one sample: its clips, or one dropped / quarantine row with the reason."""
    base = {"sample_id": sample["id"], "source_uri": sample["source_uri"]}
    rows = []
    try:
        with blobs.local_path(sample["blob"]) as path:
            clips = [_pseudo_clip(path, sample, config)] if sample["kind"] == "image" else _video_clips(path, sample, config)
            for frames, fps, fields in clips:
                row_id = clip_id(sample["id"], fields["start_frame"], fields["end_frame"], salt)
                rows.append({**base, **fields, "id": row_id, **_store_clip(frames, fps, sample, blobs, config),
                             **_frame_columns(frames, fps, stages)})
    except media.MediaError as exc:
        # clips cut before the failure are dropped with it: a sample is curated whole or not at all
        return [{**base, "status": "quarantine", "error": type(exc).__name__, "reason": exc.reason}]
    if not rows:
        return [{**base, "status": "dropped", "reason": f"no shot of at least {config.split.min_clip_seconds:g} s"}]
    return rows


def _store_clip(frames: Sequence[np.ndarray], fps: float, sample: dict, blobs: BlobStore, config: CurateConfig) -> dict:
    blob = blobs.put_bytes(encode_clip(frames, fps, config.transcode))
    return {
        "status": "clip",
        "blob": blob.key,
        "fps": fps,
        "num_frames": len(frames),
        "width": frames[0].shape[1],
        "height": frames[0].shape[0],
        "duration": len(frames) / fps,
        "source_width": sample["width"],
        "source_height": sample["height"],
        "caption": sample["caption"],
        "label": sample["label"],
    }


def _frame_columns(frames: Sequence[np.ndarray], fps: float, stages: Sequence[Stage]) -> dict[str, Any]:
    """The cut stages' columns of one clip, a batch of one: the clip's frames are in memory now."""
    batch = {FRAMES: object_column([frames]), "fps": np.array([fps])}
    for stage in stages:
        batch = stage.process(batch)
    return {name: _scalar(batch[name][0]) for name, _ in stored_schema(stages)}


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def clip_id(sample_id: str, start: int, end: int, salt: str) -> str:
    """Same sample, same range, same cut settings -> same id, in every run."""
    return stable_id(sample_id, start, end, salt)


def _pseudo_clip(path: str, sample: dict, config: CurateConfig) -> tuple[np.ndarray, float, dict]:
    cfg = config.pseudo_video
    frames = pseudo_video(media.read_image(path), cfg, stable_seed(cfg.seed, sample["id"]))
    fields = {"pseudo": True, "start_frame": 0, "end_frame": len(frames), "start_time": 0.0,
              "end_time": len(frames) / cfg.fps}
    return frames, cfg.fps, fields


def _video_clips(path: str, sample: dict, config: CurateConfig) -> Iterator[tuple[Sequence[np.ndarray], float, dict]]:
    fps, src_width, src_height = _source_format(path, sample)
    tc = config.transcode
    # decode at the size the clips are stored at (the cover size when center-cropping)
    width, height = output_size(src_width, src_height, tc.size, False)
    if tc.center_crop:
        scale = max(tc.size[0] / src_width, tc.size[1] / src_height, 1e-9)
        width, height = min(src_width, round(src_width * scale)), min(src_height, round(src_height * scale))
    decode_size = None if (width, height) == (src_width, src_height) else (width, height)
    for start, end, frames in _stream_shots(path, fps, decode_size, config):
        clip = transcode_frames(frames, fps, tc)
        fields = {"pseudo": False, "start_frame": start, "end_frame": end, "start_time": start / fps, "end_time": end / fps}
        yield clip, output_fps(fps, tc), fields


def _source_format(path: str, sample: dict) -> tuple[float, int, int]:
    """fps, width and height as ingest probed them: probing again would decode the file's tail again."""
    if any(sample.get(key) is None for key in ("fps", "width", "height")):  # a row ingest did not probe
        info = media.probe_video(path)
        return info.fps, info.width, info.height
    return float(sample["fps"]), int(sample["width"]), int(sample["height"])


def _stream_shots(path: str, fps: float, size, config: CurateConfig) -> Iterator[tuple[int, int, list[np.ndarray]]]:
    """Clip ranges with their frames, emitted as soon as the shot they belong to is closed.

    The open shot is held as a list of per-frame views of the decoded chunks, so no frame is
    copied between decoding and encoding.
    """
    split = config.split
    detector = ShotDetector(split, fps)
    max_len = math.floor(split.max_clip_seconds * fps + 1e-6)
    piece_len = max(1, round(split.piece_seconds * fps))
    buffer: list[np.ndarray] = []
    buffer_start = shot_start = decoded = 0
    for frames in media.iter_frames(path, size=size, chunk_frames=split.chunk_frames):
        buffer += list(frames)
        decoded += len(frames)
        for cut in detector.feed(frames):
            if cut > shot_start:
                yield from _clips_of_shot(buffer, buffer_start, shot_start, cut, fps, split)
                shot_start = cut
        # An open shot far longer than a clip: cut pieces off its head, well behind any late-reported cut.
        while decoded - shot_start > 2 * max_len + piece_len:
            yield shot_start, shot_start + piece_len, buffer[shot_start - buffer_start : shot_start - buffer_start + piece_len]
            shot_start += piece_len
        buffer, buffer_start = buffer[shot_start - buffer_start :], shot_start
    for end in [*(c for c in detector.finish() if c > shot_start), decoded]:
        yield from _clips_of_shot(buffer, buffer_start, shot_start, end, fps, split)
        shot_start = end


def _clips_of_shot(buffer: list[np.ndarray], buffer_start: int, start: int, end: int, fps: float, split) -> Iterator:
    for a, b in clip_ranges([(start, end)], fps, split):
        yield a, b, buffer[a - buffer_start : b - buffer_start]
