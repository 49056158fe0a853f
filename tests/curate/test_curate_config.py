import pytest
import yaml
from pydantic import ValidationError

from pipelines.curate.config import CurateConfig, PseudoVideoConfig, SplitConfig


def test_defaults_follow_the_papers():
    config = CurateConfig()
    assert config.split.threshold == 27.0
    assert (config.split.min_clip_seconds, config.split.max_clip_seconds, config.split.piece_seconds) == (2.0, 10.0, 5.0)
    assert config.watermark.threshold == 0.5
    assert config.motion.min_score == 0.001
    assert config.watermark.weights_path is None and config.aesthetic.weights_path is None


def test_yaml_roundtrip_and_typos_fail(tmp_path):
    path = tmp_path / "curate.yaml"
    path.write_text(yaml.safe_dump({"split": {"detector": "adaptive"}, "watermark": {"weights_path": "/w/watermark_model_v1.pt"}}))
    config = CurateConfig.from_yaml(path)
    assert config.split.detector == "adaptive" and str(config.watermark.weights_path) == "/w/watermark_model_v1.pt"
    with pytest.raises(ValidationError):
        CurateConfig.model_validate({"split": {"treshold": 30}})
    with pytest.raises(ValidationError):
        CurateConfig.model_validate({"nonsense": {}})


def test_validation():
    with pytest.raises(ValidationError):
        SplitConfig(min_clip_seconds=6, piece_seconds=5)
    with pytest.raises(ValidationError):
        PseudoVideoConfig(zoom_range=(0.8, 1.2))
    with pytest.raises(ValidationError):
        SplitConfig(detector="histogram")
