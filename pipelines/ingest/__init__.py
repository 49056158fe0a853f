"""Ingest: find media in folders, manifests and HF datasets; probe it; write the ``samples`` table."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.ingest.discover import SourceError
    from pipelines.ingest.job import IngestSummary, run_ingest

__all__ = ["IngestSummary", "SourceError", "run_ingest"]

# Ray workers import pipelines.ingest.probe, which runs this file first. Resolving the exports on
# first use keeps the driver-only modules (settings, catalog, Ray runner) out of a fresh worker.
_HOMES = {"IngestSummary": "pipelines.ingest.job", "run_ingest": "pipelines.ingest.job",
          "SourceError": "pipelines.ingest.discover"}


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
