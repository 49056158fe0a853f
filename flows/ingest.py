"""Prefect flow ``ingest``: one task that runs the Ray Data ingest job."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from pipelines.ingest import IngestSummary, run_ingest
from pipelines.settings import Settings


@task(name="ingest-ray-job")
def ingest_task(settings: Settings, sources: list[str], run_id: str) -> IngestSummary:
    return run_ingest(settings, sources, run_id)


@flow(name="ingest")
def ingest_flow(sources: list[str], settings: Settings) -> IngestSummary:
    """Discover, probe and catalog media from folders, manifests and HF datasets."""
    summary = ingest_task(settings, sources, run_id=str(flow_run.get_id() or "local"))
    create_table_artifact(
        key="ingest-summary",
        table=summary.rows(),
        description=f"Ingest of {', '.join(sources)}: samples v{summary.samples.version}",
    )
    return summary
