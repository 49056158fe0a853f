"""Prefect flows ``evaluate`` (the Ray evaluation job, then the report) and ``report``."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from pipelines.evaluate.job import EvalConfig, EvalSummary, run_evaluate
from pipelines.evaluate.report import ReportPaths, write_report
from pipelines.settings import Settings
from storage.location import read_bytes


@task(name="evaluate-ray-job")
def evaluate_task(settings: Settings, config: EvalConfig, run_id: str) -> EvalSummary:
    return run_evaluate(settings, config, run_id)


@task(name="write-report")
def report_task(settings: Settings, runs: list[str]) -> ReportPaths:
    location = settings.location()
    paths = write_report(location, runs)
    create_markdown_artifact(
        key="evaluation-report",
        markdown=read_bytes(location, paths.markdown).decode() + f"\nFull page: `{paths.html}`\n",
        description=f"Evaluation report for {', '.join(runs)}",
    )
    return paths


@flow(name="evaluate")
def evaluate_flow(settings: Settings, config: EvalConfig, report: bool = True) -> tuple[EvalSummary, ReportPaths | None]:
    """Generate clips for a prompt set with a trained cascade, measure them, and report the run."""
    summary = evaluate_task(settings, config, str(flow_run.get_id() or "local"))
    create_table_artifact(
        key="evaluate-metrics",
        table=summary.rows(),
        description=f"{config.run} on {config.prompt_set} ({summary.checkpoint})",
    )
    paths = report_task(settings, [config.run]) if report and summary.results else None
    return summary, paths


@flow(name="report")
def report_flow(settings: Settings, runs: list[str]) -> ReportPaths:
    """HTML, Markdown and JSON reports of the runs' evaluation results."""
    return report_task(settings, runs)
