"""Prefect flow ``curate``: samples -> clips, as a resumable Ray job inside one task."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from pipelines.curate.job import CurateSummary, run_curate
from pipelines.settings import Settings


@task(name="curate-ray-job")
def curate_task(settings: Settings, run_id: str, samples_version: int | None) -> CurateSummary:
    return run_curate(settings, run_id, samples_version)


@flow(name="curate")
def curate_flow(settings: Settings, samples_version: int | None = None) -> CurateSummary:
    """Cut, transcode, filter, caption and dedup the samples table into a new clips version."""
    summary = curate_task(settings, str(flow_run.get_id() or "local"), samples_version)
    create_table_artifact(
        key="curate-funnel",
        table=summary.funnel_table(),
        description=f"Curation funnel: samples v{summary.samples_version} -> clips v{summary.clips.version}",
    )
    create_table_artifact(key="curate-summary", table=summary.rows(), description="Curation run summary")
    return summary
