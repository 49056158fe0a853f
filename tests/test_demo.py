"""The main job's data phases, in-process on the session's Ray and Prefect: sample media -> samples -> clips."""

import pytest

from flows.demo import demo_flow
from pipelines.settings import load_settings
from storage.catalog import Catalog

pytestmark = pytest.mark.usefixtures("ray_local", "prefect_server")


def test_demo_ingests_and_curates_the_sample_media(tmp_path):
    settings = load_settings(overrides={"storage": {"root": str(tmp_path)},
                                        "curate": {"transcode": {"size": [128, 96]}}}, environ={})
    summary = demo_flow(settings=settings, train=False)
    ingested, curated = summary.ingested, summary.curated
    catalog = Catalog(settings.location())
    samples = catalog.read("samples").to_pylist()
    assert ingested.quarantined == 0 and len(samples) == 10
    assert {r["kind"] for r in samples} == {"video", "image"}
    clips = catalog.read("clips").to_pylist()
    assert len(clips) == curated.clips.row_counts["total"] >= 5
    assert any(c["pseudo"] for c in clips) and any(not c["pseudo"] for c in clips)
    assert [r["stage"] for r in catalog.read("funnel").to_pylist()][0] == "cut"
