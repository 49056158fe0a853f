"""Near-duplicate removal over clips and images.

Each row gets a feature per keyframe: a 64-bit perceptual hash (pHash: sign of the low DCT band
against its median; dHash: sign of horizontal gradients), or one L2-normalised CLIP embedding when
weights exist. :func:`select_unique` then works on the whole table (the caller gathers features
from all batches): rows are visited best-first (highest priority, e.g. the longest clip, then the
smallest id) and a row is dropped when it is near a row already kept. Deterministic whatever the
batch order, and previously kept rows can be passed in so a resumed run dedups against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import cv2
import numpy as np
import pyarrow as pa

from pipelines.curate.config import DedupConfig
from pipelines.curate.frames import object_column
from pipelines.curate.stage import FRAMES, Stage

_BITS = 1 << np.arange(64, dtype=np.uint64)


def _gray(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA).astype(np.float64)


def _pack(bits: np.ndarray) -> np.uint64:
    return np.bitwise_or.reduce(bits.reshape(64).astype(np.uint64) * _BITS)


def phash(image: np.ndarray) -> np.uint64:
    """64-bit DCT hash of a uint8 RGB image: robust to rescaling, compression and small edits."""
    # OpenCV's DCT is orthonormal, like scipy's dctn(norm="ortho") (equal to 1e-12), and spares
    # every cut worker scipy's import
    low = cv2.dct(_gray(image, (32, 32)))[:8, :8]
    return _pack(low > np.median(low))


def dhash(image: np.ndarray) -> np.uint64:
    """64-bit gradient hash: is each pixel brighter than its right neighbour (9x8 grid)."""
    gray = _gray(image, (9, 8))
    return _pack(gray[:, 1:] > gray[:, :-1])


HASHES: dict[str, Callable[[np.ndarray], np.uint64]] = {"phash": phash, "dhash": dhash}


def hash_frames(frames: Sequence[np.ndarray], k: int, method: str = "phash") -> np.ndarray:
    """``k`` hashes (uint64) at evenly spaced frames; short clips repeat frames so every row has ``k``."""
    indices = np.floor((np.arange(k) + 0.5) * len(frames) / k).astype(np.int64)
    return np.array([HASHES[method](frames[i]) for i in indices], dtype=np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean Hamming distance between hash rows: ``a (m, k)`` x ``b (n, k)`` -> ``(m, n)``."""
    return np.bitwise_count(a[:, None, :] ^ b[None, :, :]).mean(axis=-1)


@dataclass(frozen=True)
class DedupResult:
    keep: np.ndarray  # bool per row
    duplicate_of: list[str | None]  # the kept id each dropped row duplicates

    def reasons(self) -> list[str | None]:
        return [None if original is None else f"near_duplicate_of:{original}" for original in self.duplicate_of]


def _near_function(config: DedupConfig, use_clip: bool) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if use_clip:
        return lambda a, b: a @ b.T >= config.min_cosine
    return lambda a, b: hamming(a, b) <= config.max_hamming


def select_unique(
    ids: Sequence[str],
    features: np.ndarray,
    config: DedupConfig,
    priority: Sequence[float] | None = None,
    kept_features: np.ndarray | None = None,
    kept_ids: Sequence[str] = (),
) -> DedupResult:
    """Keep one row per group of near-duplicates.

    ``features`` are hash rows ``(n, k)`` uint64, or embeddings ``(n, d)`` float (CLIP, cosine).
    ``kept_features`` / ``kept_ids`` are rows kept earlier (another run, another shard): they always
    stay, and new rows near them are dropped.
    """
    ids = [str(i) for i in ids]
    features = np.asarray(features)
    use_clip = np.issubdtype(features.dtype, np.floating)
    is_near = _near_function(config, use_clip)
    priority = np.zeros(len(ids)) if priority is None else np.asarray(priority, dtype=np.float64)
    order = sorted(range(len(ids)), key=lambda i: (-priority[i], ids[i]))

    kept_rows: list[np.ndarray] = [] if kept_features is None else list(np.asarray(kept_features))
    kept_names: list[str] = list(kept_ids)
    keep = np.zeros(len(ids), dtype=bool)
    duplicate_of: list[str | None] = [None] * len(ids)
    # blocks bound memory: each block is compared with everything kept so far, then with itself
    block = max(1, 2**22 // max(1, len(ids) * features[0].size)) if len(ids) else 1
    for start in range(0, len(order), block):
        members = order[start : start + block]
        near_kept = is_near(features[members], np.stack(kept_rows)) if kept_rows else np.zeros((len(members), 0), bool)
        near_block = is_near(features[members], features[members])
        block_kept: list[int] = []  # positions in members
        for pos, row in enumerate(members):
            hits = np.flatnonzero(near_kept[pos])
            earlier = [p for p in block_kept if near_block[pos, p]]
            if len(hits):
                duplicate_of[row] = kept_names[hits[0]]
            elif earlier:
                duplicate_of[row] = ids[members[earlier[0]]]
            else:
                keep[row] = True
                block_kept.append(pos)
        kept_rows += [features[members[p]] for p in block_kept]
        kept_names += [ids[members[p]] for p in block_kept]
    return DedupResult(keep=keep, duplicate_of=duplicate_of)


class DedupStage(Stage):
    """Perceptual hashes of each clip's keyframes, taken in the cut task; keeps one clip per group
    of near-duplicates among the rows every earlier stage kept."""

    name = block = "dedup"
    config_class = DedupConfig
    runs_in = "cut"
    columns = (("phash", pa.list_(pa.uint64())),)

    @classmethod
    def skip_reason(cls, config: DedupConfig) -> str | None:
        return "CLIP dedup needs embeddings; perceptual hash used" if config.method == "clip" else None

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        method = self.config.method if self.config.method in HASHES else "phash"
        hashes = [hash_frames(frames, self.config.num_keyframes, method).tolist() for frames in batch[FRAMES]]
        return {**batch, "phash": object_column(hashes)}

    def drop_reasons(self, rows: Sequence[Mapping[str, Any]]) -> list[str | None]:
        if not rows:
            return []
        # prefer real footage over pseudo-videos, then longer clips
        priority = [(0.0 if r["pseudo"] else 1e6) + r["duration"] for r in rows]
        hashes = np.array([r["phash"] for r in rows], dtype=np.uint64)
        result = select_unique([r["id"] for r in rows], hashes, self.config, priority=priority)
        return [None if keep else "near_duplicate" for keep in result.keep]
