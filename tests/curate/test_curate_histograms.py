"""The score histograms users pick thresholds from: clips per bin and what the current rule drops."""

from pipelines.curate.config import CurateConfig, MotionConfig
from pipelines.curate.job import build_stages
from pipelines.curate.select import score_histograms


def _clip(motion: float, toxicity: float | None) -> dict:
    return {"motion_score": motion, "toxicity_score": toxicity, "nsfw_score": None, "source_width": 640,
            "source_height": 360, "duration": 4.0, "pseudo": False}


def test_histogram_counts_each_bin_and_what_the_threshold_drops_there():
    clips = [_clip(m, None) for m in (0.0, 0.0005, 0.05, 0.1, 0.15, 0.3)]
    config = CurateConfig(motion=MotionConfig(min_score=0.001, max_score=0.2))
    rows = score_histograms(clips, build_stages(config), bins=3)
    assert [r["score"] for r in rows] == ["motion_score"] * 3  # unscored columns get no histogram
    assert [(r["from"], r["to"]) for r in rows] == [(0.0, 0.1), (0.1, 0.2), (0.2, 0.3)]
    assert [r["clips"] for r in rows] == [3, 2, 1]
    assert [r["dropped_now"] for r in rows] == [2, 0, 1]  # two static, one jittery

    looser = score_histograms(clips, build_stages(CurateConfig(motion=MotionConfig(min_score=0.0, max_score=0.5))), bins=3)
    assert [r["dropped_now"] for r in looser] == [0, 0, 0]
