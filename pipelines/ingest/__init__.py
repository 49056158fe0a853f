"""Ingest: find media in folders, manifests and HF datasets; probe it; write the ``samples`` table."""

from pipelines.ingest.discover import SourceError
from pipelines.ingest.job import IngestSummary, run_ingest

__all__ = ["IngestSummary", "SourceError", "run_ingest"]
