"""Stage B actor: caption and score clips with every model stage, loaded once per worker.

Keyframes are decoded from the stored clip (decord); captioners run first so the
toxic-text filter also sees generated captions.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipelines.curate.captions import LabelCaptioner, LLMParaphraser, VLMCaptioner
from pipelines.curate.config import CurateConfig
from pipelines.curate.filters import AestheticFilter, NSFWFilter, ToxicityFilter, WatermarkFilter
from pipelines.curate.frames import KEYFRAMES, keyframe_indices
from pipelines.curate.workdir import StageParts
from storage import media
from storage.blobs import BlobStore
from storage.location import StorageLocation

BATCH = 8  # clips scored together: the keyframes of 8 clips make one nudenet batch

SCORE_COLUMNS = ("nsfw_score", "nsfw_clip_score", "toxicity_score", "watermark_score", "aesthetic_score")

ANNOTATION_SCHEMA = pa.schema(
    [("id", pa.string()), ("caption", pa.string()), ("caption_source", pa.string())]
    + [(name, pa.float64()) for name in SCORE_COLUMNS]
)

STAGE_CLASSES = (LabelCaptioner, LLMParaphraser, VLMCaptioner, ToxicityFilter, NSFWFilter, WatermarkFilter, AestheticFilter)
_CONFIG_OF = {LabelCaptioner: "caption", LLMParaphraser: "caption", VLMCaptioner: "caption",
              ToxicityFilter: "toxicity", NSFWFilter: "nsfw", WatermarkFilter: "watermark",
              AestheticFilter: "aesthetic"}


def build_stages(config: CurateConfig) -> list:
    return [cls(getattr(config, _CONFIG_OF[cls])) for cls in STAGE_CLASSES]


def skipped_stages(config: CurateConfig) -> dict[str, str]:
    """Stage name -> why it does not run, decided from the config without loading any model."""
    reasons = {cls.name: cls.skip_reason(getattr(config, _CONFIG_OF[cls])) for cls in STAGE_CLASSES}
    reasons["nsfw_clip_head"] = NSFWFilter.head_skip_reason(config.nsfw)
    return {name: reason for name, reason in reasons.items() if reason}


class Annotator:
    """Ray Data actor: clip rows -> captions and scores, written to ``parts`` before returning."""

    def __init__(self, location: StorageLocation, config: CurateConfig, parts: StageParts):
        self.blobs = BlobStore(location)
        self.parts = parts
        self.stages = build_stages(config)
        self.num_keyframes = max(config.nsfw.num_keyframes, config.watermark.num_keyframes,
                                 config.aesthetic.num_keyframes, config.caption.num_keyframes)

    def __call__(self, block: pa.Table) -> pa.Table:
        """A block as it comes (the clips of one cut sample), scored ``BATCH`` clips at a time.

        Waiting for Ray Data to fill a batch would hold a finished video's clips back until the next
        video is cut, leaving a CPU idle at the end of the job.
        """
        slices = [self._annotate(block.slice(start, BATCH)) for start in range(0, len(block), BATCH)]
        return pa.concat_tables(slices) if slices else pa.table({"id": pa.array([], pa.string())})

    def _annotate(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        columns = {
            "id": np.array([r["id"] for r in rows], dtype=object),
            "caption": np.array([r["caption"] for r in rows], dtype=object),
            "caption_source": np.array([r.get("caption_source") for r in rows], dtype=object),
            "label": np.array([r["label"] for r in rows], dtype=object),
            KEYFRAMES: _objects([self._keyframes(r["blob"], r["num_frames"]) for r in rows]),
        }
        for stage in self.stages:
            columns = stage(columns)
        table = pa.table({name: _column(columns, name, len(rows)) for name in ANNOTATION_SCHEMA.names},
                         schema=ANNOTATION_SCHEMA)
        self.parts.write(table)
        return table.select(["id"])

    def _keyframes(self, blob: str, num_frames: int) -> np.ndarray:
        with self.blobs.local_path(blob) as path:
            return media.read_frames(path, keyframe_indices(num_frames, self.num_keyframes))


def _objects(values: list) -> np.ndarray:
    """A 1-D object array, even when the items are same-shaped arrays numpy would stack."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def _column(columns: dict, name: str, n: int) -> list:
    values = columns.get(name)
    if values is None:
        return [None] * n
    # NaN means "not scored" (stage skipped): store null, not a number
    return [None if isinstance(v, float) and np.isnan(v) else (v.item() if hasattr(v, "item") else v) for v in values]
