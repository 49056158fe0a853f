"""Batch evaluation: protocols, feature extraction on Ray Data, metric math, statistics cache."""

from pipelines.evaluate.metrics import (
    RankDeficientError,
    clipsim,
    frechet_distance,
    frechet_from_stats,
    gaussian_stats,
    inception_score,
)
from pipelines.evaluate.protocols import (
    PRESETS,
    CLIPSIMProtocol,
    FIDProtocol,
    FVDProtocol,
    ISProtocol,
    Protocol,
    ValueRangeError,
)

__all__ = [
    "PRESETS",
    "CLIPSIMProtocol",
    "FIDProtocol",
    "FVDProtocol",
    "ISProtocol",
    "Protocol",
    "RankDeficientError",
    "ValueRangeError",
    "clipsim",
    "frechet_distance",
    "frechet_from_stats",
    "gaussian_stats",
    "inception_score",
]
