"""Explicit pyarrow schemas of the catalog tables. Every table has a string ``id``."""

from __future__ import annotations

import pyarrow as pa

SAMPLES = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # "video" | "image"
        pa.field("sha256", pa.string(), nullable=False),  # content hash of the media bytes
        pa.field("blob", pa.string(), nullable=False),  # key in the blob store, relative to the root
        pa.field("source", pa.string(), nullable=False),  # the folder / manifest / dataset it came from
        pa.field("source_uri", pa.string(), nullable=False),  # the file as found
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("caption", pa.string()),
        pa.field("label", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("fps", pa.float64()),
        pa.field("num_frames", pa.int64()),
        pa.field("duration", pa.float64()),
        pa.field("codec", pa.string()),
    ]
)

QUARANTINE = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),  # which job rejected it: "ingest", "curate.split", ...
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("error", pa.string(), nullable=False),  # short machine-readable kind, e.g. "CorruptMediaError"
        pa.field("reason", pa.string(), nullable=False),  # what a person reads
        pa.field("sample_id", pa.string()),  # the sample it belonged to, when known
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"samples": SAMPLES, "quarantine": QUARANTINE}


def register_schema(name: str, schema: pa.Schema) -> None:
    """Later stages add their tables here (clips, funnel, runs, eval_results, ...)."""
    if "id" not in schema.names:
        raise ValueError(f"table {name!r} needs an 'id' column to upsert on")
    existing = SCHEMAS.get(name)
    if existing is not None and not existing.equals(schema):
        raise ValueError(f"table {name!r} is already registered with another schema")
    SCHEMAS[name] = schema


def schema_for(name: str) -> pa.Schema:
    try:
        return SCHEMAS[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(SCHEMAS))}") from None
