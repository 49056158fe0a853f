"""Pre-flight of the pretrained folder: one-line errors naming the key and the fix, before Ray."""

from __future__ import annotations

import shutil

import pytest

from pipelines.train.preflight import PretrainedFolderError, check_pretrained
from pipelines.train.tiny import tiny_train_config, write_tiny_sd
from storage.errors import T2VError


@pytest.fixture(scope="module")
def sd_without_image_encoder(tmp_path_factory):
    # SD 1.5 / 2.1 as downloaded: no image_encoder/
    folder = write_tiny_sd(tmp_path_factory.mktemp("sd") / "sd15")
    shutil.rmtree(folder / "image_encoder")
    return folder


def test_image_conditioning_without_image_encoder_names_the_key(sd_without_image_encoder):
    config = tiny_train_config(sd_without_image_encoder)
    with pytest.raises(PretrainedFolderError, match=r"image_encoder/.*train\.base\.image_conditioning: false") as info:
        check_pretrained(config, "base")
    assert isinstance(info.value, T2VError) and "\n" not in str(info.value)
    check_pretrained(tiny_train_config(sd_without_image_encoder, base={"image_conditioning": False}), "base")
    for stage in ("interpolation", "superres", "vae_decoder"):
        check_pretrained(config, stage)
    with pytest.raises(PretrainedFolderError, match="stage prior needs image_encoder/"):
        check_pretrained(config, "prior")


def test_missing_parts_and_folders_fail_in_one_line(sd_without_image_encoder, tmp_path):
    broken = shutil.copytree(sd_without_image_encoder, tmp_path / "broken")
    for name in ("vocab.json", "tokenizer.json"):
        (broken / "tokenizer" / name).unlink(missing_ok=True)
    for weights in (broken / "vae").glob("*.safetensors"):
        weights.unlink()
    config = tiny_train_config(broken, base={"image_conditioning": False})
    with pytest.raises(PretrainedFolderError, match=r"stage base needs vae/.*no weights"):
        check_pretrained(config, "base")
    with pytest.raises(PretrainedFolderError, match="stage prior needs tokenizer/.*vocab.json"):
        check_pretrained(config, "prior")
    with pytest.raises(PretrainedFolderError, match="no folder"):
        check_pretrained(tiny_train_config(tmp_path / "nowhere"), "base")


def test_prediction_type_comes_from_the_folders_scheduler(sd_without_image_encoder, tmp_path, caplog):
    import json

    from pipelines.train.preflight import with_folder_defaults

    v_folder = shutil.copytree(sd_without_image_encoder, tmp_path / "sd21")
    scheduler = v_folder / "scheduler" / "scheduler_config.json"
    scheduler.write_text(json.dumps({**json.loads(scheduler.read_text()), "prediction_type": "v_prediction"}))
    fitted = with_folder_defaults(tiny_train_config(v_folder))
    assert {fitted.stage(s).prediction_type for s in ("base", "interpolation", "superres")} == {"v_prediction"}
    assert with_folder_defaults(tiny_train_config(sd_without_image_encoder)).base.prediction_type == "epsilon"
    kept = with_folder_defaults(tiny_train_config(v_folder, base={"prediction_type": "epsilon"}))
    assert kept.base.prediction_type == "epsilon" and "overrides the pretrained scheduler" in caplog.text


def test_failure_row_keeps_the_workers_error():
    from ray.train.v2.api.exceptions import WorkerGroupError

    from pipelines.train.job import root_error

    wrapped = WorkerGroupError("rank 0: OSError ...", {1: RuntimeError("late"), 0: OSError("no file named model.safetensors")})
    assert root_error(wrapped) == "OSError: no file named model.safetensors"
    assert root_error(ValueError("bad\nmore")) == "ValueError: bad"
