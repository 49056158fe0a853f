"""Training settings validate, forbid unknown keys and agree with modeling's lists."""

from typing import get_args

import pytest
from pydantic import ValidationError

from modeling.freeze import FreezePolicy as ModelingFreezePolicy
from modeling.inflation import VARIANTS
from pipelines.settings import SettingsError, load_settings
from pipelines.train.config import FreezePolicy, TrainConfig, Variant


def test_literals_match_modeling():
    assert get_args(Variant) == VARIANTS
    assert get_args(FreezePolicy) == get_args(ModelingFreezePolicy)


def test_defaults_follow_the_papers():
    config = TrainConfig()
    assert config.base.num_frames == 16 and (config.data.fps_min, config.data.fps_max) == (1.0, 30.0)
    assert config.base.freeze == "spatial_frozen" and config.optim.grad_clip == 1.0
    assert config.interpolation.num_frames == 5 and config.interpolation.factor == 4


@pytest.mark.parametrize(
    "bad",
    [
        {"base": {"stepz": 3}},
        {"interpolation": {"num_frames": 6, "factor": 4}},
        {"data": {"fps_min": 10, "fps_max": 2}},
        {"base": {"variant": "sora"}},
        {"name": "has space"},
        {"strategy": "fsdp"},  # with the default EMA
    ],
)
def test_bad_settings_fail_loudly(bad):
    with pytest.raises(ValidationError):
        TrainConfig(**bad)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"interpolation": {"spatial_kernel": 2}}, "spatial_kernel must be odd"),
        ({"base": {"spatial_kernel": 3}}, "variant make_a_video has no spatial_kernel"),
        ({"base": {"variant": "lavie", "text_cross_attention": True}}, "variant lavie has no text_cross_attention"),
        ({"superres": {"head_dim": 8, "temporal_kernel": 5}}, "variant lavie has no head_dim, temporal_kernel"),
    ],
)
def test_variant_knobs_validate(bad, message):
    with pytest.raises(ValidationError, match=message):
        TrainConfig(**bad)


@pytest.mark.parametrize(
    ("select", "message"),
    [
        ({"label": ["red circle"]}, "label"),  # the field is labels
        ({"labels": []}, "at least 1 item"),
        ({"labels": ['say "hi"']}, "double quote"),
        ({"sources": ["data/shapes"]}, "absolute paths or URIs"),
    ],
)
def test_row_selection_validates(select, message):
    with pytest.raises(ValidationError, match=message):
        TrainConfig(data={"select": select})
    assert TrainConfig(data={"select": {"sources": ["s3://bucket/shapes"], "pseudo": True}}).data.select.describe() == (
        "sources ['s3://bucket/shapes'], pseudo True")


def test_variant_knobs_reach_the_inflation_options():
    config = TrainConfig(interpolation={"spatial_kernel": 3, "ff_mult": 2}, base={"temporal_kernel": 5})
    assert config.interpolation.inflation_options() == {
        "head_dim": 64, "ff_mult": 2, "temporal_kernel": 3, "spatial_kernel": 3, "text_cross_attention": False}
    assert config.base.inflation_options() == {"head_dim": 64, "ff_mult": 0, "temporal_kernel": 5}
    assert TrainConfig().superres.inflation_options() == {}
    assert TrainConfig.model_validate_json(config.model_dump_json()) == config  # a saved config loads back


def test_train_section_in_settings_names_the_key(tmp_path):
    config_file = tmp_path / "t2v.yaml"
    config_file.write_text("train:\n  optim:\n    lr: -1\n")
    with pytest.raises(SettingsError, match="train.optim.lr"):
        load_settings(config_file, environ={})
    settings = load_settings(None, {"train": {"base": {"steps": 7}}}, environ={})
    assert settings.train.base.steps == 7
