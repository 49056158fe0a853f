"""Cache of real-data feature statistics (mean, covariance) for FVD/FID.

Real-data statistics are costly (thousands of videos through I3D) and reused by
every evaluation, so they are stored as ``.npz`` on a pyarrow filesystem, keyed
by the dataset version, the protocol and the feature-network weights: a change
to any of them is a different entry, never a stale hit.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from pyarrow import fs as pafs
from pydantic import BaseModel

from modeling.features.checkpoint import PathLike
from pipelines.evaluate.metrics import gaussian_stats

RANDOM_INIT = "random-init"


@dataclass(frozen=True)
class FeatureStats:
    mean: np.ndarray
    cov: np.ndarray
    count: int

    @classmethod
    def from_features(cls, features: np.ndarray) -> "FeatureStats":
        mean, cov = gaussian_stats(features)
        return cls(mean, cov, len(features))


def weights_id(weights_path: PathLike | None) -> str:
    """Content hash of a weights file or directory; ``random-init`` when there are none."""
    if weights_path is None:
        return RANDOM_INIT
    path = Path(weights_path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def stats_key(dataset_version: str, protocol: BaseModel, weights: str) -> str:
    """Relative path of one entry: ``<dataset_version>/<protocol name>-<hash>.npz``."""
    # The declared input range only says how videos arrive, not what is measured.
    fingerprint = protocol.model_dump_json(exclude={"input_range"}) + weights
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    safe_version = re.sub(r"[^A-Za-z0-9._-]", "_", dataset_version)
    return f"{safe_version}/{protocol.name}-{digest}.npz"


class StatsCache:
    """``.npz`` statistics under ``root`` (a local path or a URI such as ``s3://bucket/stats``)."""

    def __init__(self, root: str, filesystem: pafs.FileSystem | None = None):
        if filesystem is None:
            filesystem, root = pafs.FileSystem.from_uri(root if "://" in root else str(Path(root).resolve()))
        self.filesystem, self.root = filesystem, root.rstrip("/")

    def load(self, key: str) -> FeatureStats | None:
        path = f"{self.root}/{key}"
        if self.filesystem.get_file_info(path).type == pafs.FileType.NotFound:
            return None
        with self.filesystem.open_input_stream(path) as stream:
            archive = np.load(io.BytesIO(stream.read()), allow_pickle=False)
            return FeatureStats(archive["mean"], archive["cov"], int(archive["count"]))

    def save(self, key: str, stats: FeatureStats) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, mean=stats.mean, cov=stats.cov, count=np.int64(stats.count))
        path = f"{self.root}/{key}"
        self.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        # Write then move, so a crash never leaves a truncated entry that later loads.
        with self.filesystem.open_output_stream(f"{path}.partial") as stream:
            stream.write(buffer.getvalue())
        self.filesystem.move(f"{path}.partial", path)

    def get_or_compute(self, key: str, compute_features: Callable[[], np.ndarray]) -> FeatureStats:
        cached = self.load(key)
        if cached is not None:
            return cached
        stats = FeatureStats.from_features(compute_features())
        self.save(key, stats)
        return stats
