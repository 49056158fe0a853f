"""Curation stages: split, transcode, filters, captions, pseudo-videos, dedup.

The job (:mod:`pipelines.curate.job`) cuts each sample once (:mod:`~pipelines.curate.cut`: decode,
shots, transcode, motion and perceptual hash while the frames are in memory), scores the clips with
the model stages (:mod:`~pipelines.curate.annotate`), then applies every rule to the stored scores
(:mod:`~pipelines.curate.select`). Each config block marks its ``keep_fields`` (thresholds): they are
left out of the resume keys, so changing one re-applies the rules and recomputes nothing.

=====================  ======================================  =========================================
model stage            reads                                   writes
=====================  ======================================  =========================================
NSFWFilter             keyframes                               nsfw_score, nsfw_clip_score
ToxicityFilter         caption, label                          toxicity_score
WatermarkFilter        keyframes                               watermark_score
AestheticFilter        keyframes                               aesthetic_score
LabelCaptioner         caption, label, caption_source          caption, caption_source
LLMParaphraser         caption, caption_source, id             caption, caption_source, label_caption
VLMCaptioner           caption, keyframes                      caption, caption_source
=====================  ======================================  =========================================

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
