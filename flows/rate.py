"""Human evaluation flows: clips for the prompts a run lacks before rating, and the ratings summary."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.generate import generate_flow
from pipelines.generate import GenerateConfig, GenerateSummary
from pipelines.rate.pairs import missing_prompts
from pipelines.rate.summary import table_rows, write_summary
from pipelines.settings import Settings
from storage.catalog import Catalog
from storage.location import read_bytes


def generate_missing(settings: Settings, runs: tuple[str, str], prompts: list[str]) -> list[GenerateSummary]:
    """Run the ``generate`` flow for each run that has no clip of some of ``prompts`` yet."""
    catalog = Catalog(settings.location())
    return [generate_flow(settings=settings, config=GenerateConfig(run=run, prompts=missing))
            for run in runs if (missing := missing_prompts(catalog, run, prompts))]


@task(name="summarise-ratings")
def summary_task(settings: Settings, runs: list[str]) -> list[dict]:
    location = settings.location()
    summaries, markdown, document = write_summary(location, runs)
    create_markdown_artifact(key="human-preference", markdown=read_bytes(location, markdown).decode()
                             + f"\nJSON: `{document}`\n", description=f"Human preference: {' vs '.join(runs)}")
    for summary in summaries:
        create_table_artifact(key="human-preference-table", table=table_rows(summary),
                              description=f"{summary['run_a']} vs {summary['run_b']}")
    return summaries


@flow(name="ratings-summary")
def ratings_summary_flow(settings: Settings, runs: list[str]) -> list[dict]:
    """Win / tie / loss with 95 % intervals and rater agreement from the ``ratings`` table."""
    return summary_task(settings, runs)
