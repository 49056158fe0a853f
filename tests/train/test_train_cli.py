"""``t2v train``: the command function the CLI registers, checked before Ray starts, and a
worker's error as the CLI and the runs table show it."""

import shutil

import yaml
from typer.testing import CliRunner

from flows.cli import app
from flows.train import stages_for
from pipelines.settings import Settings
from storage.catalog import Catalog


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


def test_a_worker_error_reaches_the_cli_and_the_runs_table(tmp_path, train_data, sd_folders, ray_local, prefect_server):
    # weights that pass pre-flight (the file is there) but fail to load in the Ray Train worker
    broken = shutil.copytree(sd_folders["1.5"], tmp_path / "sd15")
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"train": {
        "name": "broken", "pretrained": str(broken), "num_workers": 1, "cpus_per_worker": 0.5,
        "base": {"steps": 1, "width": 64, "height": 64, "num_frames": 4},
    }}))
    result = CliRunner().invoke(app, ["train", "--root", str(train_data.root), "--config", str(config)])
    error = result.exception
    row = next(r for r in Catalog(train_data.location).read("runs").to_pylist() if r["id"] == "broken/base")
    assert result.exit_code == 1 and "WorkerGroupError" not in type(error).__name__
    assert row["status"] == "failed" and row["error"].startswith(f"{type(error).__name__}: ")
    assert any("Error Snippet" in note and type(error).__name__ in note for note in error.__notes__)  # the worker's
