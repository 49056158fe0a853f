"""``t2v train``: the command function the CLI registers, checked without starting Ray."""

from typer.testing import CliRunner

from flows.cli import app
from flows.train import stages_for
from pipelines.settings import Settings


def test_stage_all_trains_the_cascade_in_order(sd_folders, train_data):
    with_prior = Settings(train={"base": {"image_conditioning": True}})
    assert stages_for("all", with_prior) == ["base", "interpolation", "superres", "vae_decoder", "prior"]
    sd15 = Settings(train={"pretrained": str(sd_folders["1.5"])})  # no image encoder: no prior
    assert stages_for("all", sd15) == ["base", "interpolation", "superres", "vae_decoder"]
    assert stages_for("all", Settings(train={"pretrained": str(train_data.pretrained)}))[-1] == "prior"
    assert stages_for("superres", Settings()) == ["superres"]


def test_unknown_stage_and_bad_config_exit_with_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--stage", "decoder", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "unknown stage 'decoder'" in result.output
    config = tmp_path / "train.yaml"
    config.write_text("train:\n  base:\n    stepz: 3\n")
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2 and "train.base.stepz: unknown key" in result.output


def test_missing_model_or_clips_exit_with_one_line(tmp_path, train_data):
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--root", str(train_data.root)])
    assert result.exit_code == 2 and "train.pretrained is empty" in result.output
    config = tmp_path / "train.yaml"
    config.write_text(f"train:\n  pretrained: {train_data.pretrained}\n  num_workers: 1\n")
    result = runner.invoke(app, ["train", "--root", str(tmp_path / "empty"), "--config", str(config)])
    assert result.exit_code == 2 and "no clips table" in result.output
