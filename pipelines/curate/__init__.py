"""Curation: one list of stages over the clips a video is cut into.

The job (:mod:`pipelines.curate.job`) cuts each sample once (:mod:`~pipelines.curate.cut`: decode,
shots, transcode), then runs its list of stages (:mod:`~pipelines.curate.stage`: ``setup`` once per
worker, ``process`` adds columns, ``keep`` decides). Each stage owns its config block, whose
``keep_fields`` (thresholds) are left out of the resume keys, so changing one re-applies every
``keep`` to the stored columns and recomputes nothing.

================  ========  ====================================  =========================================
stage             runs in   reads                                 writes
================  ========  ====================================  =========================================
SizeFilter        select    source_width/height, duration         (rule only)
MotionFilter      cut       frames                                motion_score
BlurFilter        cut       frames                                blur_score
LabelCaptioner    annotate  caption, label, caption_source        caption, caption_source
LLMParaphraser    annotate  caption, caption_source, id           caption, caption_source, label_caption
VLMCaptioner      annotate  caption, keyframes                    caption, caption_source
NSFWFilter        annotate  keyframes                             nsfw_score, nsfw_clip_score
ToxicityFilter    annotate  caption, label                        toxicity_score
WatermarkFilter   annotate  keyframes                             watermark_score
AestheticFilter   annotate  keyframes                             aesthetic_score
DedupStage        cut       frames                                phash (rule: near-duplicates of kept rows)
================  ========  ====================================  =========================================

Imports are lazy so ``import pipelines.curate`` does not load cv2, torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CurateConfig": "pipelines.curate.config",
    "split_video": "pipelines.curate.split",
    "split_frames": "pipelines.curate.split",
    "SplitResult": "pipelines.curate.split",
    "resize_frames": "pipelines.curate.transcode",
    "transcode_clip": "pipelines.curate.transcode",
    "motion_score": "pipelines.curate.motion",
    "Stage": "pipelines.curate.stage",
    "SizeFilter": "pipelines.curate.filters",
    "MotionFilter": "pipelines.curate.motion",
    "BlurFilter": "pipelines.curate.blur",
    "DedupStage": "pipelines.curate.dedup",
    "NSFWFilter": "pipelines.curate.filters",
    "ToxicityFilter": "pipelines.curate.filters",
    "WatermarkFilter": "pipelines.curate.filters",
    "AestheticFilter": "pipelines.curate.filters",
    "LabelCaptioner": "pipelines.curate.captions",
    "LLMParaphraser": "pipelines.curate.captions",
    "VLMCaptioner": "pipelines.curate.captions",
    "pseudo_video": "pipelines.curate.pseudo_video",
    "select_unique": "pipelines.curate.dedup",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipelines.curate' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
