"""Curation stages: split, transcode, filters, captions, pseudo-videos, dedup.

Each stage is small and separately usable: pure functions on numpy frames, and for Ray Data a
class that loads its model once in ``__init__(config)`` and maps a numpy batch in ``__call__``.
Ray-ready stages (``map_batches(Stage, fn_constructor_kwargs={"config": {...}}, batch_format="numpy")``):

=====================  ======================================  =========================================
stage                  reads                                   writes
=====================  ======================================  =========================================
SizeFilter             width, height, duration                 aspect_ratio
MotionScorer           frames, fps                             motion_score
NSFWFilter             keyframes                               nsfw_score, nsfw_clip_score
ToxicityFilter         caption, label                          toxicity_score
WatermarkFilter        keyframes                               watermark_score
AestheticFilter        keyframes                               aesthetic_score
LabelCaptioner         caption, label, caption_source          caption, caption_source
LLMParaphraser         caption, caption_source, id             caption, caption_source, label_caption
VLMCaptioner           caption, keyframes                      caption, caption_source
PseudoVideoMaker       image, id                               frames, fps
DedupFeatures          keyframes                               phash (+ clip_embedding)
=====================  ======================================  =========================================

Every stage has ``name``, ``skipped_reason`` (None, or why it did not run) and, for filters,
``decide(row) -> (keep, reason)``; :func:`pipelines.curate.filters.decide` applies all rules.
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
    "MotionScorer": "pipelines.curate.motion",
    "SizeFilter": "pipelines.curate.filters",
    "NSFWFilter": "pipelines.curate.filters",
    "ToxicityFilter": "pipelines.curate.filters",
    "WatermarkFilter": "pipelines.curate.filters",
    "AestheticFilter": "pipelines.curate.filters",
    "decide": "pipelines.curate.filters",
    "LabelCaptioner": "pipelines.curate.captions",
    "LLMParaphraser": "pipelines.curate.captions",
    "VLMCaptioner": "pipelines.curate.captions",
    "pseudo_video": "pipelines.curate.pseudo_video",
    "PseudoVideoMaker": "pipelines.curate.pseudo_video",
    "DedupFeatures": "pipelines.curate.dedup",
    "select_unique": "pipelines.curate.dedup",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipelines.curate' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
