"""Write a clips version as training-ready data: a HF ``datasets`` dataset or webdataset shards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Literal

import pyarrow as pa

from storage.blobs import BlobStore
from storage.catalog import Catalog
from storage.location import StorageLocation

Format = Literal["hf", "webdataset"]
# Scores and provenance travel with every sample; the video is the mp4 bytes as stored.
METADATA_COLUMNS = ("id", "sample_id", "source_uri", "caption", "caption_source", "label", "pseudo", "fps",
                    "num_frames", "width", "height", "duration", "start_time", "end_time", "motion_score",
                    "nsfw_score", "toxicity_score", "watermark_score", "aesthetic_score")


def export_clips(location: StorageLocation, out: Path, format: Format, version: int | None = None,
                 shard_size: int = 1000) -> int:
    """Export ``clips`` (latest or ``version``) to ``out``; returns the number of samples written."""
    catalog = Catalog(location)
    clips = catalog.read("clips", catalog.manifest("clips", version).version)
    out.mkdir(parents=True, exist_ok=True)
    if format == "hf":
        return _to_hf(clips, BlobStore(location), out)
    return _to_webdataset(clips, BlobStore(location), out, shard_size)


def _samples(clips: pa.Table, blobs: BlobStore) -> Iterator[dict]:
    for row in clips.to_pylist():
        yield {**{name: row[name] for name in METADATA_COLUMNS}, "mp4": blobs.read(row["blob"])}


def _to_hf(clips: pa.Table, blobs: BlobStore, out: Path) -> int:
    import datasets

    features = datasets.Features.from_arrow_schema(clips.select(list(METADATA_COLUMNS)).schema)
    features["mp4"] = datasets.Value("binary")
    dataset = datasets.Dataset.from_generator(lambda: _samples(clips, blobs), features=features)
    dataset.save_to_disk(str(out))
    return len(dataset)


def _to_webdataset(clips: pa.Table, blobs: BlobStore, out: Path, shard_size: int) -> int:
    """Shards ``clips-000000.tar`` with ``<id>.mp4``, ``<id>.txt`` (caption) and ``<id>.json`` per sample."""
    import webdataset as wds

    count = 0
    with wds.ShardWriter(str(out / "clips-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
        for sample in _samples(clips, blobs):
            video = sample.pop("mp4")
            sink.write({"__key__": sample["id"], "mp4": video, "txt": sample["caption"] or "",
                        "json": json.dumps(sample, sort_keys=True).encode()})
            count += 1
    return count
