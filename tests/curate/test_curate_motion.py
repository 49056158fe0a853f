import numpy as np
import pytest

from pipelines.curate.config import MotionConfig
from pipelines.curate.frames import object_column
from pipelines.curate.motion import MotionFilter, motion_score
from storage.media import read_frames, write_mp4


def _texture(height: int = 96, width: int = 480) -> np.ndarray:
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return np.kron(small, np.ones((8, 8, 1), dtype=np.uint8))


def _panning(n: int = 50, step: int = 2) -> np.ndarray:
    texture = _texture()
    return np.stack([texture[:, i * step : i * step + 128] for i in range(n)])


@pytest.fixture(scope="module")
def static_clip(tmp_path_factory) -> np.ndarray:
    # through H.264, so compression noise is part of what "static" must tolerate
    path = tmp_path_factory.mktemp("motion") / "static.mp4"
    write_mp4(path, np.repeat(_texture()[None, :, :128], 50, axis=0), 25)
    return read_frames(path)


@pytest.mark.parametrize("method", ["frame_diff", "flow"])
def test_static_moving_and_jittery(static_clip, method):
    config = MotionConfig(method=method)
    static = motion_score(static_clip, 25, config)
    moving = motion_score(_panning(), 25, config)
    assert static < 0.001 < moving
    rule = MotionFilter(config)
    assert rule.keep({"motion_score": static}) == "static"
    assert rule.keep({"motion_score": moving}) is None


def test_noise_is_jittery():
    noise = np.random.default_rng(0).integers(0, 256, (20, 64, 64, 3), dtype=np.uint8)
    score = motion_score(noise, 25, MotionConfig())
    assert MotionFilter().keep({"motion_score": score}) == "jittery"


def test_score_does_not_depend_on_source_fps():
    fast = _panning(n=50, step=2)  # 25 fps
    slow = fast[::5]  # the same motion recorded at 5 fps
    config = MotionConfig(sample_fps=5)
    assert motion_score(fast, 25, config) == pytest.approx(motion_score(slow, 5, config), rel=1e-6)


def test_static_clip_is_dropped_and_panning_kept(static_clip):
    stage = MotionFilter()
    clips = stage.process({"frames": object_column([list(static_clip), list(_panning())]), "fps": np.array([25.0, 25.0])})
    assert [stage.keep({"motion_score": s}) for s in clips["motion_score"]] == ["static", None]
