"""Prefect flow ``catalog-maintenance``: compact every catalog table and vacuum old versions
(``t2v catalog compact`` on a schedule; versions pinned by runs stay)."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from pipelines.settings import Settings
from storage.catalog import Catalog


@task(name="compact-and-vacuum")
def maintain_task(settings: Settings, keep_days: float) -> list[dict]:
    return Catalog(settings.location()).maintain(timedelta(days=keep_days))


@flow(name="catalog-maintenance")
def catalog_maintenance_flow(settings: Settings, keep_days: float) -> list[dict]:
    """Rewrite small fragments into large ones, then delete versions older than ``keep_days``."""
    rows = maintain_task(settings, keep_days)
    create_table_artifact(key="catalog-maintenance", table=rows, description=f"Compacted; kept {keep_days:g} days")
    return rows
