"""Prefect flows ``evaluate`` (the Ray evaluation job, then the report) and ``report``, and their CLI commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from pipelines.evaluate.job import EvalConfig, EvalSummary, GenerationConfig, run_evaluate
from pipelines.evaluate.prompts import PromptSetKind
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


# ---- CLI commands (registered on the ``t2v`` app in flows/cli.py) ------------------------------

RootOption = Annotated[
    Optional[str], typer.Option("--root", help="Storage root (folder, file://..., s3://...); overrides storage.root.")
]
ConfigOption = Annotated[
    Optional[Path], typer.Option("--config", help="YAML settings file (default: ./t2v.yaml when present).")
]


def evaluate_command(
    run: Annotated[str, typer.Option("--run", help="Training run name (its cascade: runs/<name>/cascade/).")],
    protocol: Annotated[str, typer.Option("--protocol", help="Prompt set: ucf101, msrvtt or prompts.")] = "ucf101",
    prompts: Annotated[
        Optional[Path], typer.Option("--prompts", help="Caption/prompt file (.txt, .csv, .json, .jsonl).")
    ] = None,
    cascade: Annotated[Optional[Path], typer.Option("--cascade", help="Local cascade folder to evaluate instead.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Evaluate the first N prompts only.")] = None,
    samples_per_prompt: Annotated[int, typer.Option("--samples-per-prompt", help="Clips per prompt.")] = 1,
    frames: Annotated[int, typer.Option("--frames", help="Frames per clip.")] = 16,
    size: Annotated[int, typer.Option("--size", help="Clip height and width in pixels.")] = 256,
    steps: Annotated[int, typer.Option("--steps", help="DDIM steps.")] = 50,
    guidance: Annotated[float, typer.Option("--guidance", help="Classifier-free guidance scale.")] = 7.5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the first clip; clip i uses seed + i.")] = 0,
    workers: Annotated[int, typer.Option("--workers", help="Actors per pool (generation, features).")] = 1,
    allow_singular: Annotated[
        bool, typer.Option("--allow-singular", help="Compute FVD/FID from fewer samples than feature dims.")
    ] = False,
    root: RootOption = None,
    config: ConfigOption = None,
) -> None:
    """Generate clips for a prompt set, measure FVD / IS / CLIPSIM, and write the report."""
    from flows.cli import _settings  # imported here: flows.cli imports this module
    from flows.console import console, fail, print_table
    from pipelines.evaluate.prompts import PromptFileError

    if protocol not in ("ucf101", "msrvtt", "prompts"):
        fail(f"--protocol must be ucf101, msrvtt or prompts, not {protocol!r}")
        raise typer.Exit(2)
    settings = _settings(config, root)
    prompt_set: PromptSetKind = protocol  # type: ignore[assignment]
    eval_config = EvalConfig(
        run=run, prompt_set=prompt_set, prompts_file=str(prompts) if prompts else None,
        cascade=str(cascade) if cascade else None, limit=limit, samples_per_prompt=samples_per_prompt,
        generation=GenerationConfig(num_frames=frames, height=size, width=size, num_inference_steps=steps,
                                    guidance_scale=guidance, seed=seed),
        num_workers=workers, allow_singular=allow_singular,
    )
    try:
        summary, paths = evaluate_flow(settings=settings, config=eval_config)
    except (FileNotFoundError, PromptFileError, ValueError) as exc:
        fail(str(exc))
        raise typer.Exit(2) from None
    print_table(f"evaluate {run} ({protocol})", summary.rows())
    if paths is not None:
        console.print(f"report: {paths.html}")


def report_command(
    runs: Annotated[list[str], typer.Argument(help="Training run names to put side by side.")],
    root: RootOption = None,
    config: ConfigOption = None,
) -> None:
    """Write the HTML / Markdown / JSON report of evaluated runs."""
    from flows.cli import _settings
    from flows.console import console, fail

    settings = _settings(config, root)
    try:
        paths = report_flow(settings=settings, runs=runs)
    except ValueError as exc:
        fail(str(exc))
        raise typer.Exit(2) from None
    console.print(f"report: {paths.html}\nmarkdown: {paths.markdown}\njson: {paths.json}")
