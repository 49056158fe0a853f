import numpy as np
import pytest

from pipelines.curate.config import TranscodeConfig
from pipelines.curate.transcode import resize_frames, transcode_clip, transcode_frames
from storage.media import probe_video, read_frames


def _frames(width: int, height: int, n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def test_fit_keeps_aspect_and_even_sizes():
    out = resize_frames(_frames(640, 272), (320, 320))
    assert out.shape == (2, 136, 320, 3)
    out = resize_frames(_frames(177, 101), (64, 64))
    h, w = out.shape[1:3]
    assert h % 2 == 0 and w % 2 == 0 and w == 64
    assert abs(w / h - 177 / 101) < 0.1


def test_fit_never_upscales():
    assert resize_frames(_frames(100, 60), (512, 320)).shape[1:3] == (60, 100)


def test_center_crop_fills_the_box_and_keeps_the_middle():
    frames = np.zeros((1, 100, 300, 3), dtype=np.uint8)
    frames[:, :, 100:200] = 255  # white middle third
    out = resize_frames(frames, (64, 64), center_crop=True)
    assert out.shape == (1, 64, 64, 3)
    assert out[0, :, 8:56].min() > 200  # the crop shows the middle, not the black sides


def test_transcode_clip_roundtrip(tmp_path):
    config = TranscodeConfig(fps=10, size=(64, 64))
    frames = _frames(96, 64, n=50)  # 2 s at 25 fps
    path = tmp_path / "clip.mp4"
    path.write_bytes(transcode_clip(frames, 25.0, config))
    info = probe_video(path)
    assert info.fps == pytest.approx(10.0)
    assert info.num_frames == 20
    assert (info.width, info.height) == (64, 42)
    assert read_frames(path, [0]).shape == (1, 42, 64, 3)


def test_transcode_frames_keeps_views_and_the_preset_trades_size_for_speed():
    frames = _frames(64, 48, n=30)
    kept = transcode_frames(list(frames), 30.0, TranscodeConfig(fps=10, size=(64, 64)))
    assert len(kept) == 10 and all(np.shares_memory(k, frames) for k in kept)  # no copy when no resize is needed
    slow, fast = (transcode_clip(frames, 30.0, TranscodeConfig(fps=10, size=(64, 64), preset=p)) for p in ("veryfast", "ultrafast"))
    assert probe_video(fast).num_frames == probe_video(slow).num_frames == 10 and fast != slow
