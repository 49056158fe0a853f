"""Pre-flight of the pretrained folder and defaults that fit it, on reduced-width SD 1.5 / 2.1
folders as downloaded: one-line errors naming the key and the fix, before Ray."""

from __future__ import annotations

import json
import shutil

import pytest
from diffusers import DDIMScheduler, DDPMScheduler

from pipelines.train.objectives import scheduler_config
from pipelines.train.preflight import (
    NoiseScheduleError,
    PretrainedFolderError,
    check_pretrained,
    image_conditioning,
    with_folder_defaults,
)
from pipelines.train.tiny import tiny_train_config
from storage.errors import T2VError


def test_image_conditioning_follows_the_image_encoder(sd_folders, train_data):
    sd15 = sd_folders["1.5"]
    config = tiny_train_config(sd15)  # image_conditioning: auto
    assert not image_conditioning(config) and with_folder_defaults(config).base.image_conditioning is False
    for stage in ("base", "interpolation", "superres", "vae_decoder"):
        check_pretrained(config, stage)
    with pytest.raises(PretrainedFolderError, match=r"image_encoder/.*train\.base\.image_conditioning: false") as info:
        check_pretrained(tiny_train_config(sd15, base={"image_conditioning": True}), "base")
    assert isinstance(info.value, T2VError) and "\n" not in str(info.value)
    with pytest.raises(PretrainedFolderError, match="stage prior needs image_encoder/"):
        check_pretrained(config, "prior")
    # an image encoder named by path turns it on (and serves the prior)
    named = tiny_train_config(sd15, image_encoder=str(train_data.pretrained / "image_encoder"))
    assert image_conditioning(named) and with_folder_defaults(named).base.image_conditioning is True
    check_pretrained(named, "prior")
    assert image_conditioning(tiny_train_config(train_data.pretrained))  # a folder with image_encoder/
    with pytest.raises(PretrainedFolderError, match=r"^train\.image_encoder: stage base needs image_encoder/"):
        check_pretrained(tiny_train_config(sd15, image_encoder=str(sd15 / "nowhere"), base={"image_conditioning": True}), "base")


def test_missing_parts_and_folders_fail_in_one_line(sd_folders, tmp_path):
    broken = shutil.copytree(sd_folders["1.5"], tmp_path / "broken")
    for name in ("vocab.json", "tokenizer.json"):
        (broken / "tokenizer" / name).unlink(missing_ok=True)
    for weights in (broken / "vae").glob("*.safetensors"):
        weights.unlink()
    config = tiny_train_config(broken)
    with pytest.raises(PretrainedFolderError, match=r"stage base needs vae/.*no weights"):
        check_pretrained(config, "base")
    with pytest.raises(PretrainedFolderError, match="stage prior needs tokenizer/.*vocab.json"):
        check_pretrained(config, "prior")
    with pytest.raises(PretrainedFolderError, match="no folder"):
        check_pretrained(tiny_train_config(tmp_path / "nowhere"), "base")


def test_prediction_type_and_noise_schedule_come_from_the_folders_scheduler(sd_folders, tmp_path, caplog):
    fitted = with_folder_defaults(tiny_train_config(sd_folders["2.1"]))
    assert {fitted.stage(s).prediction_type for s in ("base", "interpolation", "superres")} == {"v_prediction"}
    assert with_folder_defaults(tiny_train_config(sd_folders["1.5"])).base.prediction_type == "epsilon"
    kept = with_folder_defaults(tiny_train_config(sd_folders["2.1"], base={"prediction_type": "epsilon"}))
    assert kept.base.prediction_type == "epsilon" and "prediction_type: epsilon overrides the pretrained scheduler" in caplog.text

    other = shutil.copytree(sd_folders["1.5"], tmp_path / "linear", ignore=shutil.ignore_patterns("unet", "vae"))
    scheduler = other / "scheduler" / "scheduler_config.json"
    scheduler.write_text(json.dumps({**json.loads(scheduler.read_text()), "beta_schedule": "linear", "beta_end": 0.02}))
    schedule = with_folder_defaults(tiny_train_config(other)).noise_schedule
    assert (schedule.beta_schedule, schedule.beta_end, schedule.beta_start) == ("linear", 0.02, 0.00085)
    kept = with_folder_defaults(tiny_train_config(other, noise_schedule={"beta_end": 0.012})).noise_schedule
    assert (kept.beta_schedule, kept.beta_end) == ("linear", 0.012) and "beta_end: 0.012 overrides" in caplog.text


def test_a_zero_terminal_snr_folder_trains_and_samples_its_stages_at_pure_noise(sd_folders, tmp_path):
    folder = shutil.copytree(sd_folders["2.1"], tmp_path / "zero-snr", ignore=shutil.ignore_patterns("unet", "vae"))
    scheduler = folder / "scheduler" / "scheduler_config.json"
    scheduler.write_text(json.dumps({**json.loads(scheduler.read_text()), "rescale_betas_zero_snr": True,
                                     "timestep_spacing": "trailing"}))
    config = with_folder_defaults(tiny_train_config(folder))
    assert config.noise_schedule.rescale_betas_zero_snr and config.noise_schedule.timestep_spacing == "trailing"
    # what the stages train with and the cascade samples with: the last step is pure noise and sampling starts there
    training = DDPMScheduler.from_config(scheduler_config(config))
    assert float(training.alphas_cumprod[-1]) == 0.0
    sampling = DDIMScheduler.from_config(scheduler_config(config))
    sampling.set_timesteps(10)
    assert int(sampling.timesteps[0]) == 999
    with pytest.raises(NoiseScheduleError, match="needs v-prediction, but interpolation predict") as caught:
        with_folder_defaults(tiny_train_config(folder, interpolation={"prediction_type": "epsilon"}))
    assert isinstance(caught.value, T2VError) and "\n" not in str(caught.value)


def test_failure_row_keeps_the_workers_error():
    from ray.train.v2.api.exceptions import WorkerGroupError

    from pipelines.train.job import root_error, worker_error

    wrapped = WorkerGroupError("rank 0: OSError ...", {1: RuntimeError("late"), 0: OSError("no file named model.safetensors")})
    assert root_error(wrapped) == "OSError: no file named model.safetensors"
    assert root_error(ValueError("bad\nmore")) == "ValueError: bad"
    own = PretrainedFolderError("train.pretrained: stage base needs unet/")
    assert worker_error(WorkerGroupError("Training failed due to worker errors:\n...", {0: own})) is own
