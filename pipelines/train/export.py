"""Assemble trained stages into a cascade folder that ``Cascade.from_pretrained`` loads.

Parts not trained in this run come from the pretrained T2I folder: its text encoder
and tokenizer always, its 2D VAE when the temporal decoder was not trained.
"""

from __future__ import annotations

from pathlib import Path

from diffusers import AutoencoderKL
from transformers import CLIPTextModel, CLIPTokenizer

from modeling.cascade import Cascade, CascadeConfig
from modeling.prior import ImagePrior
from modeling.temporal_vae import TemporalVAE
from modeling.video_unet import VideoUNet
from pipelines.train.checkpoint import RunPaths, fetched_folder, local_folder
from pipelines.train.config import TrainConfig
from pipelines.train.objectives import CASCADE_PART, scheduler_config
from pipelines.train.preflight import with_folder_defaults
from storage.location import StorageLocation

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
    )


def assemble_cascade(location: StorageLocation, config: TrainConfig, trained: list[str]) -> str:
    """Write ``runs/<name>/cascade/`` from the stage exports in ``trained`` (base required)."""
    if "base" not in trained:
        raise ValueError("a cascade needs a trained base stage")
    config = with_folder_defaults(config)
    parts = {}
    for stage in trained:
        with fetched_folder(location, RunPaths(location, config.name, stage).export) as folder:
            parts[CASCADE_PART[stage]] = PART_LOADERS[stage].from_pretrained(folder)
    parts.setdefault("vae", AutoencoderKL.from_pretrained(config.pretrained, subfolder="vae"))
    cascade = Cascade(
        tokenizer=CLIPTokenizer.from_pretrained(config.pretrained, subfolder="tokenizer"),
        text_encoder=CLIPTextModel.from_pretrained(config.pretrained, subfolder="text_encoder"),
        scheduler_config=scheduler_config(config),
        config=cascade_config(config, set(trained)),
        **parts,
    )
    target = location.path("runs", config.name, "cascade")
    with local_folder(location, target) as folder:
        cascade.save_pretrained(Path(folder))
    return target
