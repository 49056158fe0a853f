"""The annotate actor: runs the job's ``annotate`` stages on clips, each set up once per worker.

Keyframes are decoded from the stored clip (decord); the stages run in list order, so the
captioners come first and the toxic-text filter also sees generated captions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa

from pipelines.curate.frames import KEYFRAMES, keyframe_indices, object_column
from pipelines.curate.stage import Stage, set_up, stored_schema
from pipelines.curate.workdir import StageParts
from storage import media
from storage.blobs import BlobStore
from storage.location import StorageLocation

BATCH = 8  # clips scored together: the keyframes of 8 clips make one nudenet batch


def annotation_schema(stages: Sequence[Stage]) -> pa.Schema:
    return pa.schema([("id", pa.string()), *stored_schema(stages)])


class Annotator:
    """Ray Data actor: clip rows -> the stages' columns, written to ``parts`` before returning.

    Clips already in ``parts`` are passed over: a changed frame stage re-cuts the videos into the
    same clips (their ids hash the cut settings alone), and their scores are still valid.
    """

    def __init__(self, location: StorageLocation, stages: Sequence[Stage], parts: StageParts):
        self.blobs = BlobStore(location)
        self.parts = parts
        self.done = parts.done_keys()
        self.stages = set_up(stages)
        self.schema = annotation_schema(stages)
        self.num_keyframes = max((s.config.num_keyframes for s in stages if s.reads_keyframes), default=1)

    def __call__(self, block: pa.Table) -> pa.Table:
        """A block as it comes (the clips of one cut sample), scored ``BATCH`` clips at a time.

        Waiting for Ray Data to fill a batch would hold a finished video's clips back until the next
        video is cut, leaving a CPU idle at the end of the job.
        """
        rows = [r for r in block.to_pylist() if r["id"] not in self.done]
        slices = [self._annotate(rows[start : start + BATCH]) for start in range(0, len(rows), BATCH)]
        return pa.concat_tables(slices) if slices else pa.table({"id": pa.array([], pa.string())})

    def _annotate(self, rows: list[dict]) -> pa.Table:
        columns = {
            "id": np.array([r["id"] for r in rows], dtype=object),
            "caption": np.array([r["caption"] for r in rows], dtype=object),
            "caption_source": np.array([r.get("caption_source") for r in rows], dtype=object),
            "label": np.array([r["label"] for r in rows], dtype=object),
            KEYFRAMES: object_column([self._keyframes(r["blob"], r["num_frames"]) for r in rows]),
        }
        for stage in self.stages:
            columns = stage.process(columns)
        table = pa.table({name: _column(columns, name, len(rows)) for name in self.schema.names}, schema=self.schema)
        self.parts.write(table)
        return table.select(["id"])

    def _keyframes(self, blob: str, num_frames: int) -> np.ndarray:
        with self.blobs.local_path(blob) as path:
            return media.read_frames(path, keyframe_indices(num_frames, self.num_keyframes))


def _column(columns: dict, name: str, n: int) -> list:
    values = columns.get(name)
    if values is None:
        return [None] * n
    # NaN means "not scored" (stage skipped): store null, not a number
    return [None if isinstance(v, float) and np.isnan(v) else (v.item() if hasattr(v, "item") else v) for v in values]
