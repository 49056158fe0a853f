"""Assemble trained stages into a cascade folder that ``Cascade.from_pretrained`` loads.

Parts not trained in this run come from the pretrained T2I folder: its text encoder
and tokenizer always, its 2D VAE when the temporal decoder was not trained. Stage
exports that are adapters keep pointing at that folder, so a cascade holds one copy of
what training changed and nothing of the frozen UNet.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from diffusers import AutoencoderKL
from transformers import CLIPTextModel, CLIPTokenizer

from modeling.adapters import is_adapter, repoint_adapter
from modeling.cascade import CascadeConfig, save_cascade
from modeling.prior import ImagePrior
from modeling.temporal_vae import TemporalVAE
from modeling.video_unet import VideoUNet
from pipelines.train.checkpoint import RunPaths, fetched_folder, local_folder
from pipelines.train.config import STAGES, TrainConfig
from pipelines.train.objectives import CASCADE_PART, scheduler_config
from pipelines.train.preflight import with_folder_defaults
from storage.catalog import Catalog
from storage.errors import T2VError
from storage.location import StorageLocation


class NoTrainedBaseError(T2VError):
    """A cascade was asked of a run without a finished base stage."""


PART_LOADERS = {
    "base": VideoUNet, "interpolation": VideoUNet, "superres": VideoUNet, "vae_decoder": TemporalVAE, "prior": ImagePrior
}


def cascade_config(config: TrainConfig, trained: set[str]) -> CascadeConfig:
    data = config.data
    # The base generates at the bottom of the fps curriculum, where training ended.
    fps = data.fps_min + data.curriculum_window * (data.fps_max - data.fps_min) / 2
    return CascadeConfig(
        fps=fps,
        interpolation_factor=config.interpolation.factor if "interpolation" in trained else 1,
        superres_scale=config.superres.scale,
        superres_noise_level=min(20, config.superres.max_noise_level - 1),
        condition_on_fps=config.base.condition_on_fps,
        frame_noise_correlation={stage: config.stage(stage).frame_noise_correlation
                                 for stage in ("base", "interpolation", "superres") if stage in trained},
    )


def assemble_cascade(location: StorageLocation, config: TrainConfig, trained: list[str]) -> str:
    """Write ``runs/<name>/cascade/`` from the stage exports in ``trained`` (base required).

    Exports are copied as they are (an adapter keeps naming ``config.pretrained``, checked to
    hold its weights); what was not trained is filled as the papers allow: without an
    interpolation stage the base frames are the video, without super-resolution the base size
    is decoded, without a temporal decoder the 2D VAE decodes frame by frame.
    """
    if "base" not in trained:
        raise NoTrainedBaseError(f"run {config.name!r}: a cascade needs a trained base stage (t2v train --stage base)")
    config = with_folder_defaults(config)
    target = location.path("runs", config.name, "cascade")
    location.filesystem.delete_dir_contents(target, missing_dir_ok=True)  # no part of an older assembly stays
    with ExitStack() as exports, local_folder(location, target) as folder:
        parts: dict[str, Any] = {
            "tokenizer": CLIPTokenizer.from_pretrained(config.pretrained, subfolder="tokenizer"),
            "text_encoder": CLIPTextModel.from_pretrained(config.pretrained, subfolder="text_encoder"),
        }
        for stage in trained:
            export = RunPaths(location, config.name, stage).export
            parts[CASCADE_PART[stage]] = exports.enter_context(fetched_folder(location, export))
        parts.setdefault("vae", AutoencoderKL.from_pretrained(config.pretrained, subfolder="vae"))
        save_cascade(folder, parts, scheduler_config(config), cascade_config(config, set(trained)))
        for name in parts:
            if is_adapter(folder / name):
                repoint_adapter(folder / name, config.pretrained)
    return target


def trained_stages(location: StorageLocation, run: str) -> dict[str, TrainConfig]:
    """The stages of ``run`` that finished, in cascade order, with the settings each trained with."""
    rows = {row["id"]: row for row in Catalog(location).read("runs").to_pylist()}
    finished = [stage for stage in STAGES if (rows.get(f"{run}/{stage}") or {}).get("status") == "finished"]
    return {stage: TrainConfig.model_validate_json(rows[f"{run}/{stage}"]["config"]) for stage in finished}


def assemble_run(location: StorageLocation, run: str, pretrained: str | None = None) -> str:
    """``assemble_cascade`` from whatever stages ``run`` trained, each with its own settings;
    ``pretrained`` replaces the folder they were trained on (moved, or on another machine)."""
    stages = trained_stages(location, run)
    if "base" not in stages:
        raise NoTrainedBaseError(f"run {run!r} has no finished base stage to build a cascade on (t2v train --stage base)")
    config = stages["base"].model_copy(update={stage: settings.stage(stage) for stage, settings in stages.items()})
    if pretrained:
        config = config.model_copy(update={"pretrained": str(pretrained)})
    return assemble_cascade(location, config, list(stages))
