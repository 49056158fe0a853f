"""Workers: probe each candidate with decord / Pillow and store its bytes in the blob store.

One batch in, one :data:`RESULT_SCHEMA` table out: every candidate becomes
either an ``ok`` sample row or a ``quarantine`` row with the reason.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa

from storage.blobs import Blob, BlobStore, sha256_file
from storage.ids import stable_id
from storage.location import StorageLocation
from storage import media
from storage.schemas import SAMPLES

STAGE = "ingest"

RESULT_SCHEMA = pa.schema(
    [pa.field("status", pa.string())]
    + [pa.field(f.name, f.type) for f in SAMPLES]  # nullable here: quarantine rows leave them empty
    + [pa.field("error", pa.string()), pa.field("reason", pa.string())]
)


def sample_id(sha256: str, caption: str | None, label: str | None) -> str:
    """The same media with another caption is another training pair, so both count."""
    return stable_id(sha256, caption, label)


def quarantine_id(source_uri: str, sha256: str | None) -> str:
    return stable_id(STAGE, source_uri, sha256)


def probe_batch(batch: pa.Table, location: StorageLocation) -> pa.Table:
    """Ray Data function: candidates (pyarrow batch) -> results (:data:`RESULT_SCHEMA`)."""
    blobs = BlobStore(location)
    return pa.Table.from_pylist([probe_one(row, blobs) for row in batch.to_pylist()], schema=RESULT_SCHEMA)


def probe_one(cand: dict[str, Any], blobs: BlobStore) -> dict[str, Any]:
    if cand.get("reject"):
        return _quarantine(cand, None, "Rejected", cand["reject"])
    src: bytes | str = cand["data"] if cand.get("data") is not None else cand["path"]
    try:
        kind = cand.get("kind") or _sniff_kind(src)
        info = _probe(src, kind)
        # The blob store hashes what it stores, so good media is not hashed a second time here.
        blob = blobs.put_bytes(src) if isinstance(src, bytes) else blobs.put_file(src)
    except media.MediaError as exc:
        return _quarantine(cand, _content_sha256(src), type(exc).__name__, exc.reason)
    except OSError as exc:
        return _quarantine(cand, _content_sha256(src), type(exc).__name__, exc.strerror or str(exc))
    return _sample(cand, kind, blob, info)


def _content_sha256(src: bytes | str) -> str | None:
    """Hash of media that failed, for its quarantine id; None when it cannot even be read."""
    if isinstance(src, bytes):
        return hashlib.sha256(src).hexdigest()
    try:
        return sha256_file(src)[0]
    except OSError:
        return None


def _sniff_kind(src: bytes | str) -> str:
    try:
        media.probe_image(src)
        return "image"
    except media.MediaError:
        return "video"


def _probe(src: bytes | str, kind: str) -> dict[str, Any]:
    if kind == "image":
        info = media.probe_image(src)
        return {"width": info.width, "height": info.height, "codec": info.format}
    video = media.probe_video(src)
    return {
        "width": video.width,
        "height": video.height,
        "fps": video.fps,
        "num_frames": video.num_frames,
        "duration": video.duration,
        "codec": video.codec,
    }


def _sample(cand: dict[str, Any], kind: str, blob: Blob, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "ok",
        "id": sample_id(blob.sha256, cand.get("caption"), cand.get("label")),
        "kind": kind,
        "sha256": blob.sha256,
        "blob": blob.key,
        "source": cand["source"],
        "source_uri": cand["source_uri"],
        "bytes": blob.size,
        "caption": cand.get("caption"),
        "label": cand.get("label"),
        **info,
    }


def _quarantine(cand: dict[str, Any], sha: str | None, error: str, reason: str) -> dict[str, Any]:
    return {
        "status": "quarantine",
        "id": quarantine_id(cand["source_uri"], sha),
        "source": cand["source"],
        "source_uri": cand["source_uri"],
        "sha256": sha,
        "caption": cand.get("caption"),
        "label": cand.get("label"),
        "error": error,
        "reason": reason,
    }


def split_results(results: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(samples rows, quarantine rows) in the catalog's schemas."""
    status = np.asarray(results.column("status").to_pylist())
    ok = results.filter(pa.array(status == "ok"))
    bad = results.filter(pa.array(status == "quarantine"))
    samples = ok.select(SAMPLES.names).cast(SAMPLES)
    quarantine = pa.table(
        {
            "id": bad.column("id"),
            "stage": pa.array([STAGE] * len(bad), pa.string()),
            "source_uri": bad.column("source_uri"),
            "error": bad.column("error"),
            "reason": bad.column("reason"),
            "sample_id": pa.nulls(len(bad), pa.string()),
        }
    )
    return samples, quarantine
