"""Prefect flow ``train``: a task running the Ray Train job, then (``--stage all``) one assembling the cascade.

``--stage all`` trains base -> interpolation -> superres -> vae_decoder (-> prior when
the base is conditioned on image embeddings, i.e. an image encoder is there) in one
worker group and assembles the cascade folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from pipelines.settings import Settings, SettingsError
from pipelines.train.config import STAGES
from pipelines.train.job import StageResult, run_stages
from pipelines.train.preflight import image_conditioning

CASCADE_ORDER = ("base", "interpolation", "superres", "vae_decoder")


@dataclass(frozen=True)
class TrainSummary:
    stages: list[StageResult]
    cascade: str | None  # the assembled cascade folder (``--stage all``)

    def rows(self) -> list[dict[str, Any]]:
        return [result.row() for result in self.stages]


def stages_for(stage: str, settings: Settings) -> list[str]:
    if stage == "all":
        return [*CASCADE_ORDER, *(["prior"] if image_conditioning(settings.train) else [])]
    if stage not in STAGES:
        raise SettingsError(f"unknown stage {stage!r}; expected 'all' or one of {', '.join(STAGES)}")
    return [stage]


@task(name="train-ray-job")
def train_stages_task(settings: Settings, stages: list[str]) -> list[StageResult]:
    return run_stages(settings, stages)


@task(name="assemble-cascade")
def assemble_cascade_task(settings: Settings, stages: list[str]) -> str:
    from pipelines.train.export import assemble_cascade

    return assemble_cascade(settings.location(), settings.train, stages)


@flow(name="train")
def train_flow(settings: Settings, stage: str = "base") -> TrainSummary:
    """Train one stage, or every stage in cascade order with ``stage="all"``."""
    stages = stages_for(stage, settings)
    results = train_stages_task(settings, stages)
    cascade = assemble_cascade_task(settings, stages) if stage == "all" else None
    summary = TrainSummary(results, cascade)
    create_table_artifact(key="train-summary", table=summary.rows(), description=f"train {settings.train.name}: {stage}")
    return summary

