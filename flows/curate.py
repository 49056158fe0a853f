"""Prefect flows ``curate`` (samples -> clips, a resumable Ray job inside one task) and
``curate-new-samples`` (the same when a samples version has not been curated yet)."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from pipelines.curate.job import CurateSummary, run_curate
from pipelines.settings import Settings
from storage.catalog import Catalog


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
    if summary.histograms:
        create_table_artifact(
            key="curate-scores", table=summary.histograms,
            description="Clips per score bin and how many each rule drops now: pick thresholds here, then "
                        "`t2v curate` again re-applies them to the stored scores in seconds",
        )
    return summary


def uncurated_samples_version(catalog: Catalog) -> int | None:
    """The latest samples version when no clips version was curated from it yet, else None."""
    samples = catalog.latest("samples")
    if samples is None:
        return None
    clips = catalog.latest("clips")
    curated = clips.extra.get("samples_version") if clips is not None else None
    return samples.version if curated is None or curated < samples.version else None


@flow(name="curate-new-samples")
def curate_new_samples_flow(settings: Settings) -> CurateSummary | None:
    """Curate the latest samples version if no clips version comes from it yet; else do nothing.

    ``t2v serve`` runs this every ``schedules.new_samples_seconds``, so a new samples version
    (from ``t2v ingest`` anywhere that writes to the same storage root) triggers curation."""
    version = uncurated_samples_version(Catalog(settings.location()))
    if version is None:
        get_run_logger().info("no new samples version since the last curation")
        return None
    return curate_flow(settings=settings, samples_version=version)
