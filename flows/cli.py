"""The ``t2v`` command line: one subcommand per job."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
from typer.core import TyperGroup

# No network at run time: Prefect's server would otherwise try to send telemetry.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The ephemeral server migrates its database on first start; 20 s is too short on a busy 2-core box.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from flows.console import console, fail, print_rows, print_table
from pipelines.settings import Settings, load_settings
from storage.errors import T2VError


class _OneLineErrors(TyperGroup):
    """Prints t2v's own errors (bad input, bad config) in one line with exit code 2; any other
    exception is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except T2VError as exc:
            fail(str(exc))
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_OneLineErrors,
    name="t2v",
    help="Turn a text-to-image diffusion model into a text-to-video system: curate data, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
catalog_app = typer.Typer(help="Inspect catalog tables and their versions.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
cascade_app = typer.Typer(help="Build inference cascades from trained stages.", no_args_is_help=True)
app.add_typer(cascade_app, name="cascade")

RootOption = Annotated[
    Optional[str], typer.Option("--root", help="Storage root (folder, file://..., s3://...); overrides storage.root.")
]
ConfigOption = Annotated[
    Optional[Path], typer.Option("--config", help="YAML settings file (default: ./t2v.yaml when present).")
]


def _settings(config: Path | None, root: str | None, **overrides: Any) -> Settings:
    merged: dict[str, Any] = {key: value for key, value in overrides.items() if value}
    if root:
        merged.setdefault("storage", {})["root"] = root
    return load_settings(config, merged)


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="Folders, manifests (csv/parquet/jsonl) or saved HF datasets.")],
    root: RootOption = None,
    config: ConfigOption = None,
    source_root: Annotated[
        Optional[list[str]], typer.Option("--source-root", help="Folder ingest may read (repeatable).")
    ] = None,
) -> None:
    """Find videos and images, probe them, and write the [bold]samples[/bold] table."""
    from flows.ingest import ingest_flow

    overrides = {"sources": {"roots": source_root}} if source_root else {}
    settings = _settings(config, root, **overrides)
    summary = ingest_flow(sources=sources, settings=settings)
    print_table(f"ingest {summary.run_id}", summary.rows())


@app.command()
def curate(
    root: RootOption = None,
    config: ConfigOption = None,
    samples_version: Annotated[
        Optional[int], typer.Option("--samples-version", help="samples version to curate (default latest).")
    ] = None,
) -> None:
    """Cut, transcode, filter, caption and dedup [bold]samples[/bold] into a new [bold]clips[/bold] version.

    Stage settings live under `curate:` in the config file. Killed runs resume where they stopped.
    """
    from flows.curate import curate_flow
    from storage.catalog import CatalogError

    settings = _settings(config, root)
    try:
        summary = curate_flow(settings=settings, samples_version=samples_version)
    except CatalogError as exc:
        fail(f"{exc} (run `t2v ingest` first)")
        raise typer.Exit(2) from None
    print_table("curation funnel", summary.funnel_table())
    print_table("scores (equal-width bins; change a threshold and curate again: no model or video is touched)",
                summary.histogram_table())
    print_table(f"curate {summary.run_id}", summary.rows())


@app.command()
def train(
    stage: Annotated[str, typer.Option("--stage", help="base | interpolation | superres | vae_decoder | prior | all")] = "base",
    root: RootOption = None,
    config: ConfigOption = None,
) -> None:
    """Train a cascade stage on the curated [bold]clips[/bold] with Ray Train; rerun to resume.

    Settings live under `train:` in the config file; `--stage all` trains the cascade in order
    and assembles `runs/<name>/cascade` on the storage root.
    """
    from flows.train import stages_for, train_flow
    from pipelines.train.job import make_job

    settings = _settings(config, root)
    for name in stages_for(stage, settings):
        make_job(settings, name)  # settings errors stop here, before Ray starts
    summary = train_flow(settings=settings, stage=stage)
    print_table(f"train {settings.train.name}", summary.rows())
    if summary.cascade:
        console.print(f"cascade: [bold]{summary.cascade}[/bold]")


SpecOption = Annotated[
    Optional[Path], typer.Option("--spec", help="YAML file with the job's settings; the options given here override it.")
]
FramesOption = Annotated[Optional[int], typer.Option("--frames", help="Frames per (base) clip. \\[default: 16]")]
SizeOption = Annotated[Optional[int], typer.Option("--size", help="Clip height and width in pixels. \\[default: 256]")]
StepsOption = Annotated[Optional[int], typer.Option("--steps", help="DDIM steps. \\[default: 50]")]
GuidanceOption = Annotated[Optional[float], typer.Option("--guidance", help="Classifier-free guidance scale. \\[default: 7.5]")]
SeedOption = Annotated[Optional[int], typer.Option("--seed", help="Seed of the first clip; clip i uses seed + i. \\[default: 0]")]
LastStageOption = Annotated[Optional[str], typer.Option(
    "--last-stage", help="base | interpolation | superres: stop the cascade after this stage; --size is its size. "
    "\\[default: superres]")]
CascadeOption = Annotated[Optional[Path], typer.Option("--cascade", help="Local cascade folder to use instead of the run's.")]
WorkersOption = Annotated[Optional[int], typer.Option("--workers", help="Actors per pool (one model copy each). \\[default: 1]")]


def _generation(frames: int | None, size: int | None, steps: int | None, guidance: float | None,
                seed: int | None, last_stage: str | None) -> dict[str, Any]:
    return {"num_frames": frames, "height": size, "width": size, "num_inference_steps": steps,
            "guidance_scale": guidance, "seed": seed, "last_stage": last_stage}


def _job_config(model: type, spec: Path | None, **values: Any) -> Any:
    from pipelines.settings import load_job_config

    return load_job_config(model, spec, values)


@app.command()
def generate(
    run: Annotated[Optional[str], typer.Option("--run", help="Training run name (its cascade: runs/<name>/cascade/).")] = None,
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", "-p", help="A prompt (repeatable).")] = None,
    long_prompt: Annotated[
        Optional[list[str]], typer.Option("--long-prompt", help="A prompt rendered as a long video with VidRD (repeatable).")
    ] = None,
    long_clips: Annotated[Optional[int], typer.Option("--long-clips", help="Base clips chained per long video. \\[default: 3]")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write each clip as mp4 and gif here.")] = None,
    cascade: CascadeOption = None,
    frames: FramesOption = None,
    size: SizeOption = None,
    steps: StepsOption = None,
    guidance: GuidanceOption = None,
    seed: SeedOption = None,
    last_stage: LastStageOption = None,
    workers: WorkersOption = None,
    dtype: Annotated[
        Optional[str], typer.Option("--dtype", help="auto | fp32 | bf16 | fp16: auto is bf16 on GPU, fp32 on CPU; "
                                    "fp16 needs a GPU. \\[default: auto]")
    ] = None,
    spec: SpecOption = None,
    root: RootOption = None,
    config: ConfigOption = None,
) -> None:
    """Generate clips from prompts with a trained cascade into the [bold]generations[/bold] table.

    Without `--cascade`, the run's cascade is (re)assembled from the stages it trained when it
    has none or lacks one of them (as `t2v cascade assemble --run NAME`).
    """
    from flows.generate import generate_flow
    from pipelines.generate import GenerateConfig

    settings = _settings(config, root)
    job = _job_config(
        GenerateConfig, spec, run=run, prompts=prompt, long_prompts=long_prompt, cascade=str(cascade) if cascade else None,
        generation=_generation(frames, size, steps, guidance, seed, last_stage), long_video={"num_clips": long_clips},
        num_workers=workers, dtype=dtype,
    )
    summary = generate_flow(settings=settings, config=job, out=out)
    print_table(f"generate {job.run}", summary.table())
    for path in summary.files:
        console.print(str(path))


@app.command()
def evaluate(
    run: Annotated[Optional[str], typer.Option("--run", help="Training run name (its cascade: runs/<name>/cascade/).")] = None,
    protocol: Annotated[
        Optional[str], typer.Option("--protocol", help="Prompt set: ucf101, msrvtt, prompts or shapes (16 prompts, every "
                                    "colour and direction four times, scored by the weight-free shapes judge). \\[default: ucf101]")
    ] = None,
    metric: Annotated[
        Optional[list[str]], typer.Option("--metric", help="fvd, is, clipsim, fid or shapes (repeatable). "
                                          "\\[default: by prompt set: ucf101 fvd+is, msrvtt clipsim+fvd, prompts clipsim, shapes shapes]")
    ] = None,
    base_checkpoint: Annotated[
        Optional[str], typer.Option("--base-checkpoint", help="Base weights from the run's training checkpoint step_XXXXXXXX "
                                    "(EMA when the run exports EMA), or 'all' kept checkpoints: one row set each, step from the checkpoint.")
    ] = None,
    prompts: Annotated[
        Optional[Path], typer.Option("--prompts", help="Caption/prompt file (.txt, .csv, .json, .jsonl).")
    ] = None,
    cascade: CascadeOption = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Evaluate the first N prompts only.")] = None,
    samples_per_prompt: Annotated[Optional[int], typer.Option("--samples-per-prompt", help="Clips per prompt. \\[default: 1]")] = None,
    frames: FramesOption = None,
    size: SizeOption = None,
    steps: StepsOption = None,
    guidance: GuidanceOption = None,
    seed: SeedOption = None,
    last_stage: LastStageOption = None,
    workers: WorkersOption = None,
    allow_singular: Annotated[
        Optional[bool], typer.Option("--allow-singular", help="Compute FVD/FID from fewer samples than feature dims.")
    ] = None,
    spec: SpecOption = None,
    root: RootOption = None,
    config: ConfigOption = None,
) -> None:
    """Generate clips for a prompt set, measure FVD / IS / CLIPSIM (or the shapes judge's accuracies), and write the report."""
    from flows.evaluate import evaluate_flow
    from pipelines.evaluate.job import EvalConfig

    settings = _settings(config, root)
    eval_config = _job_config(
        EvalConfig, spec, run=run, prompt_set=protocol, prompts_file=str(prompts) if prompts else None,
        cascade=str(cascade) if cascade else None, limit=limit, samples_per_prompt=samples_per_prompt,
        generation=_generation(frames, size, steps, guidance, seed, last_stage), num_workers=workers, allow_singular=allow_singular,
        metrics=metric, base_checkpoint=base_checkpoint,
    )
    summary, paths = evaluate_flow(settings=settings, config=eval_config)
    print_table(f"evaluate {eval_config.run} ({eval_config.prompt_set})", summary.rows())
    if paths is not None:
        console.print(f"report: {paths.html}")


@app.command()
def report(
    runs: Annotated[list[str], typer.Argument(help="Training run names to put side by side.")],
    root: RootOption = None,
    config: ConfigOption = None,
) -> None:
    """Write the HTML / Markdown / JSON report of evaluated runs."""
    from flows.evaluate import report_flow

    settings = _settings(config, root)
    paths = report_flow(settings=settings, runs=runs)
    console.print(f"report: {paths.html}\nmarkdown: {paths.markdown}\njson: {paths.json}")


@app.command()
def rate(
    runs: Annotated[tuple[str, str], typer.Option("--runs", help="The two training runs to compare: --runs A B.")],
    prompts: Annotated[
        Optional[Path], typer.Option("--prompts", help="Prompt file (.txt, .csv, .json, .jsonl); clips a run lacks are generated first.")
    ] = None,
    host: Annotated[Optional[str], typer.Option("--host", help="Address to listen on (default: rate.host, 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option("--port", help="Port to listen on (default: rate.port, 8765).")] = None,
    root: RootOption = None,
    config: ConfigOption = None,
) -> None:
    """Serve an A/B rating page: raters see one prompt and both runs' clips (random sides) and pick the better.

    Answers go to the [bold]ratings[/bold] table as they are given; `t2v report A B` shows the win rates.
    Without --prompts, every prompt both runs generated is rated. Set `rate.token` to require a shared token.
    """
    import uuid

    from flows.rate import generate_missing
    from pipelines.evaluate.prompts import read_prompt_file
    from pipelines.rate.app import serve as serve_page
    from pipelines.rate.pairs import build_pairs
    from storage.catalog import Catalog

    settings = _settings(config, root, rate={k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    texts = [p.text for p in read_prompt_file(prompts)] if prompts else None
    if texts:
        generate_missing(settings, runs, texts)
    pairs = build_pairs(Catalog(settings.location()), runs, texts)
    rate_settings = settings.rate
    url = f"http://{rate_settings.host}:{rate_settings.port}/" + ("?token=<rate.token>" if rate_settings.token else "")
    console.print(f"rating {runs[0]} vs {runs[1]}: {len(pairs)} pairs at [bold]{url}[/bold] (Ctrl-C to stop)")
    serve_page(settings.location(), pairs, rate_settings, run_id=f"rate-{uuid.uuid4().hex[:8]}")


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")],
    format: Annotated[str, typer.Option("--format", "-f", help="hf (datasets save_to_disk) or webdataset (tar shards).")] = "webdataset",
    version: Annotated[Optional[int], typer.Option("--version", "-v", help="clips version (default latest).")] = None,
    shard_size: Annotated[int, typer.Option("--shard-size", help="Samples per webdataset shard.")] = 1000,
    root: RootOption = None,
    config: ConfigOption = None,
) -> None:
    """Write a [bold]clips[/bold] version as training-ready data: HF datasets or webdataset shards."""
    from pipelines.curate.export import export_clips
    from storage.catalog import CatalogError

    if format not in ("hf", "webdataset"):
        fail(f"--format must be hf or webdataset, not {format!r}")
        raise typer.Exit(2)
    try:
        count = export_clips(_settings(config, root).location(), out, format, version, shard_size)  # type: ignore[arg-type]
    except CatalogError as exc:
        fail(f"{exc} (run `t2v curate` first)")
        raise typer.Exit(2) from None
    console.print(f"wrote {count} clips to {out} ({format})")


@cascade_app.command("assemble")
def cascade_assemble(
    run: Annotated[str, typer.Option("--run", help="Training run name: its trained stages become runs/<name>/cascade/.")],
    pretrained: Annotated[
        Optional[Path], typer.Option("--pretrained", help="The T2I folder the stages sit on, if not where they were trained.")
    ] = None,
    root: RootOption = None,
    config: ConfigOption = None,
) -> None:
    """Build a run's cascade from whatever stages it trained (a base at least).

    Missing stages are filled as the papers allow: no interpolation stage keeps the base
    frames, no super-resolution decodes at the base size, no temporal decoder uses the
    2D VAE frame by frame, no prior gives an image-conditioned base the null embedding.
    """
    from pipelines.train.export import assemble_run, trained_stages

    location = _settings(config, root).location()
    target = assemble_run(location, run, str(pretrained.resolve()) if pretrained else None)
    console.print(f"cascade of {', '.join(trained_stages(location, run))}: [bold]{target}[/bold]")


@catalog_app.command("ls")
def catalog_ls(root: RootOption = None, config: ConfigOption = None) -> None:
    """List tables with their latest version and row count."""
    from storage.catalog import Catalog

    catalog = Catalog(_settings(config, root).location())
    rows = []
    for name in catalog.tables():
        latest = catalog.latest(name)
        if latest is not None:
            rows.append(
                {"table": name, "version": latest.version, "rows": latest.row_counts["total"],
                 "run": latest.run_id, "written": _when(latest.created_at)}
            )
    print_table(f"catalog at {catalog.location.uri()}", rows, ["table", "version", "rows", "run", "written"])


@catalog_app.command("versions")
def catalog_versions(table: str, root: RootOption = None, config: ConfigOption = None) -> None:
    """List every version of a table with its manifest."""
    from storage.catalog import Catalog

    catalog = Catalog(_settings(config, root).location())
    rows = [
        {"version": m.version, "parent": m.parent, "run": m.run_id, "config": m.config_hash,
         **m.row_counts, "written": _when(m.created_at)}
        for m in catalog.versions(table)
    ]
    print_table(f"{table} versions", rows)


@catalog_app.command("show")
def catalog_show(
    table: str,
    version: Annotated[Optional[int], typer.Option("--version", "-v", help="Version to read (default latest).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print rows as a JSON array (for scripts).")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Rows to show; 0 for all.")] = 20,
    columns: Annotated[
        Optional[str], typer.Option("--columns", "-c", help="Comma-separated columns to show (default all).")
    ] = None,
    root: RootOption = None,
    config: ConfigOption = None,
) -> None:
    """Show the rows of a table version."""
    from storage.catalog import Catalog, CatalogError

    catalog = Catalog(_settings(config, root).location())
    try:
        shown_version = catalog.manifest(table, version).version
        data = catalog.read(table, shown_version)
        if columns:
            data = data.select([c.strip() for c in columns.split(",")])
    except (CatalogError, KeyError) as exc:
        fail(str(exc).strip("'\""))
        raise typer.Exit(2) from None
    rows = data.to_pylist()
    shown = rows if limit <= 0 else rows[:limit]
    if as_json:
        sys.stdout.write(json.dumps(shown, default=str) + "\n")
        return
    print_rows(f"{table} v{shown_version}: {len(shown)} of {len(rows)} rows", shown, data.column_names)


@catalog_app.command("compact")
def catalog_compact(
    keep_days: Annotated[float, typer.Option("--keep-days", min=0, help="Vacuum versions older than this; tagged versions stay.")] = 30.0,
    root: RootOption = None,
    config: ConfigOption = None,
) -> None:
    """Compact every table's small fragments, then vacuum versions older than --keep-days."""
    from datetime import timedelta

    from storage.catalog import Catalog

    catalog = Catalog(_settings(config, root).location())
    print_table(f"compacted catalog at {catalog.location.uri()}", catalog.maintain(timedelta(days=keep_days)))


@app.command()
def serve(
    root: RootOption = None,
    config: ConfigOption = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Flow runs at a time (default: no limit).")] = None,
) -> None:
    """Serve curate, train, evaluate and the ratings summary as Prefect deployments on the cron schedules under `schedules:`.

    Against the Prefect server at PREFECT_API_URL when set; else a local Prefect server is started
    (and stopped on exit) so that schedules fire. A new samples version triggers curation
    (checked every schedules.new_samples_seconds). Stop with Ctrl-C.
    """
    from prefect import serve as serve_deployments

    from flows.serve import deployments, prefect_api

    settings = _settings(config, root)
    served = deployments(settings)
    if not served:
        fail("nothing to serve: set schedules.curate, schedules.train, schedules.evaluate or schedules.ratings "
             "(or schedules.new_samples_seconds)")
        raise typer.Exit(2)
    try:
        with prefect_api() as url:
            rows = [{"deployment": f"{d.flow_name}/{d.name}", "schedule": _schedule_text(d.schedules[0].schedule)}
                    for d in served]
            print_table(f"serving on {url}", rows)
            serve_deployments(*served, limit=limit, print_starting_message=False)
    except KeyboardInterrupt:  # Ctrl-C is how serving ends, even before Prefect's runner handles it
        console.print("stopped serving")
    except RuntimeError as exc:  # the local Prefect server did not start
        fail(str(exc))
        raise typer.Exit(1) from None


def _schedule_text(schedule: Any) -> str:
    cron = getattr(schedule, "cron", None)
    return f"cron {cron} ({schedule.timezone})" if cron else f"every {schedule.interval}"


@app.command()
def demo(
    root: RootOption = None,
    config: ConfigOption = None,
    train: Annotated[bool, typer.Option("--train/--no-train", help="Train, generate with and evaluate the tiny cascade.")] = True,
    # None: DemoSchedule's value (flows/demo.py, imported only when the demo runs: it loads torch)
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Training steps of the base stage. \\[default: 150]")] = None,
    stage_steps: Annotated[Optional[int], typer.Option("--stage-steps", min=1, help="Training steps of super-resolution and the VAE decoder. \\[default: 30]")] = None,
    interpolation_steps: Annotated[Optional[int], typer.Option("--interpolation-steps", min=1, help="Training steps of frame interpolation. \\[default: 150]")] = None,
    evaluations: Annotated[Optional[int], typer.Option("--evaluations", min=1, help="Base checkpoints evaluated, the points of the report's curves. \\[default: 3]")] = None,
    prompts: Annotated[Optional[int], typer.Option("--prompts", min=2, help="Shapes prompts to generate and evaluate (default all 16).")] = None,
) -> None:
    """The main job on sample media and the shapes world: ingest -> curate -> train a tiny cascade -> generate -> evaluate -> report.

    Its configs are written to <root>/demo/; the commands printed at the end re-run each phase alone.
    """
    from flows.demo import DemoSchedule, demo_flow

    settings = _settings(config, root)
    given = dict(base_steps=steps, stage_steps=stage_steps, interpolation_steps=interpolation_steps,
                 evaluations=evaluations)
    schedule = DemoSchedule(**{name: value for name, value in given.items() if value is not None})
    summary = demo_flow(settings=settings, train=train, evaluate=train, schedule=schedule, prompts=prompts)
    print_table("demo: ingest", summary.ingested.rows())
    print_table("demo: curation funnel", summary.curated.funnel_table())
    if summary.trained is not None:
        print_table("demo: train", summary.trained.rows())
    if summary.generated is not None:
        print_table("demo: generate", summary.generated.table())
    if summary.evaluated is not None:
        print_table("demo: evaluate", summary.evaluated.rows())
    console.print("[bold]re-run a phase on its own:[/bold]")
    for command in summary.commands.values():
        console.print(f"  {command}", soft_wrap=True, highlight=False)
    console.print(
        f"catalog at {settings.location().uri()}: {summary.ingested.samples.row_counts['total']} samples, "
        f"{summary.curated.clips.row_counts['total']} clips (try `t2v catalog ls`)"
    )
    if summary.report:
        console.print(f"report: [bold]{summary.report}[/bold]")


def _when(timestamp: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


if __name__ == "__main__":
    app()
