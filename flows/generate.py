"""Prefect flow ``generate``: prompts -> clips with a trained cascade (a Ray job inside one task)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from pipelines.generate import GenerateConfig, GenerateSummary, run_generate
from pipelines.settings import Settings


@task(name="generate-ray-job")
def generate_task(settings: Settings, config: GenerateConfig, run_id: str, out: Path | None) -> GenerateSummary:
    return run_generate(settings, config, run_id, out)


@flow(name="generate")
def generate_flow(settings: Settings, config: GenerateConfig, out: Path | None = None) -> GenerateSummary:
    """Render prompts (and long prompts, with VidRD) with a run's cascade into the ``generations`` table."""
    summary = generate_task(settings, config, str(flow_run.get_id() or "local"), out)
    create_table_artifact(key="generations", table=summary.table(), description=f"{config.run}: generated clips")
    return summary
