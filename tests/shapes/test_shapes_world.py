"""The shapes world's sample media: real files, a manifest ingest reads, labels the captioner
turns into captions, cuts the split finds, all a function of the seed."""

from __future__ import annotations

import hashlib

from pipelines.curate.captions import LABEL_TEMPLATE, LabelCaptioner
from pipelines.curate.config import CaptionConfig, SplitConfig
from pipelines.curate.split import split_video
from pipelines.ingest.discover import discover
from pipelines.shapes.samples import MANIFEST, ShapesWorldConfig, write_shapes_world
from pipelines.shapes.world import COLOURS, DIRECTIONS, SHAPES, label_templates, parse_prompt, shape_prompts
from storage.media import probe_image, probe_video

import numpy as np

CONFIG = ShapesWorldConfig(num_images=6, num_videos=12, cut_share=0.4, text_free_share=0.3)


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_shapes_world_writes_real_media_and_a_manifest_ingest_reads(tmp_path):
    written = write_shapes_world(tmp_path, CONFIG)
    candidates = list(discover([str(tmp_path / MANIFEST)], [tmp_path.resolve()]))
    assert len(candidates) == len(written) == 18
    assert all(c.reject is None for c in candidates)
    images = [c for c in candidates if c.kind == "image"]
    videos = [c for c in candidates if c.kind == "video"]
    assert len(images) == 6 and len(videos) == 12
    for image in images:
        info = probe_image(image.path)
        assert (info.width, info.height) == (128, 128)
        assert parse_prompt(image.caption).colour in COLOURS and parse_prompt(image.caption).shape in SHAPES
    for video in videos:
        info = probe_video(video.path)
        assert (info.width, info.height, info.fps) == (128, 128, 12.0) and info.duration >= 2.0
        assert video.caption is None
    labelled = [v for v in videos if v.label]
    assert 0 < len(labelled) < len(videos)  # a share is text-free
    # the label templates make captions the judge and the demo prompts share
    captioner = LabelCaptioner(CaptionConfig(templates=label_templates()))
    batch = captioner.process({"caption": np.array([None] * len(labelled), dtype=object),
                               "label": np.array([v.label for v in labelled], dtype=object)})
    for caption, source, video in zip(batch["caption"], batch["caption_source"], labelled):
        assert source == LABEL_TEMPLATE and caption == f"a {video.label}"
        expected = parse_prompt(caption)
        assert expected.direction in DIRECTIONS and expected.colour in COLOURS and expected.shape in SHAPES


def test_hard_cuts_give_the_split_two_clips(tmp_path):
    written = write_shapes_world(tmp_path, CONFIG)
    videos = [w for w in written if w.path.suffix == ".mp4"]
    cut = [w for w in videos if len(w.scenes) == 2]
    assert cut and len(cut) < len(videos)
    for sample in videos:
        result = split_video(str(sample.path), SplitConfig())
        assert len(result.cuts) == len(sample.scenes) - 1, sample.path.name
        assert len(result.clips) == len(sample.scenes)


def test_shapes_world_is_a_function_of_the_seed(tmp_path):
    small = CONFIG.model_copy(update={"num_images": 2, "num_videos": 3})
    write_shapes_world(tmp_path / "a", small)
    write_shapes_world(tmp_path / "b", small)
    write_shapes_world(tmp_path / "c", small.model_copy(update={"seed": 1}))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_shape_prompts_cover_every_colour_and_direction_twice():
    prompts = shape_prompts(repeats=2)
    assert len(prompts) == 32
    parsed = [parse_prompt(p) for p in prompts]
    for colour in COLOURS:
        assert sum(p.colour == colour for p in parsed) >= 2
    for direction in DIRECTIONS:
        assert sum(p.direction == direction for p in parsed) >= 2
    assert {p.shape for p in parsed} == set(SHAPES)
    assert parse_prompt("A video of a Yellow triangle moving up.") == parse_prompt("yellow triangle moving up")
