"""Pre-flight: check the pretrained folder against what the configured stages load,
before Ray starts, so a missing part fails in one line that names the key and the fix
instead of an ``OSError`` deep inside a worker after minutes of start-up."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipelines.train.config import TrainConfig
from storage.errors import T2VError

log = logging.getLogger(__name__)
WEIGHTS = ("*.safetensors", "*.bin")
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class PretrainedFolderError(T2VError):
    """The pretrained folder lacks a part a configured stage needs."""


def image_encoder_folder(config: TrainConfig) -> Path:
    """Where the CLIP image encoder is: ``train.image_encoder`` or the pretrained folder's ``image_encoder/``."""
    if config.image_encoder:
        return Path(config.image_encoder).expanduser()
    return Path(config.pretrained).expanduser() / "image_encoder"


def image_conditioning(config: TrainConfig) -> bool:
    """``train.base.image_conditioning`` with ``auto`` decided by whether an image encoder is there
    (SD 1.5 / 2.1 ship none, unCLIP folders do)."""
    setting = config.base.image_conditioning
    if setting == "auto":
        return (image_encoder_folder(config) / "config.json").is_file()
    return setting


def stage_parts(stage: str, config: TrainConfig) -> tuple[str, ...]:
    """The subfolders of the pretrained folder that ``stage`` loads (mirrors objectives.encoder_needs)."""
    diffusion = ("unet", "vae", "text_encoder", "tokenizer")
    return {
        "base": diffusion + (("image_encoder",) if image_conditioning(config) else ()),
        "interpolation": diffusion,
        "superres": diffusion,
        "vae_decoder": ("vae",),
        "prior": ("text_encoder", "tokenizer", "image_encoder"),
    }[stage]


def _fix(stage: str, part: str) -> str:
    if stage == "base" and part == "image_encoder":
        return (
            "set train.base.image_conditioning: false or auto (SD 1.5 / 2.1 ship no image encoder), "
            "or train.image_encoder to a CLIP image encoder folder"
        )
    if stage == "prior":
        return "the prior learns CLIP image embeddings: set train.image_encoder to a CLIP image encoder folder or train other stages"
    return "point train.pretrained at a Stable Diffusion folder in diffusers layout"


def _problem(sub: Path, part: str) -> str | None:
    if part == "tokenizer":
        if not (sub / "vocab.json").is_file() and not (sub / "tokenizer.json").is_file():
            return f"{sub} has no vocab.json / tokenizer.json"
        return None
    if not (sub / "config.json").is_file():
        return f"{sub}/config.json is missing"
    if not any(any(sub.glob(pattern)) for pattern in WEIGHTS):
        return f"{sub} has no weights (*.safetensors)"
    return None


def check_pretrained(config: TrainConfig, stage: str) -> None:
    """Raise :class:`PretrainedFolderError` if ``train.pretrained`` cannot serve ``stage``."""
    folder = Path(config.pretrained).expanduser()
    if not folder.is_dir():
        if HUB_ID.match(config.pretrained):
            return  # a hub id: resolved from the local hub cache by the loaders
        raise PretrainedFolderError(f"train.pretrained: no folder {folder}")
    for part in stage_parts(stage, config):
        named = part == "image_encoder" and config.image_encoder
        problem = _problem(image_encoder_folder(config) if part == "image_encoder" else folder / part, part)
        if problem:
            key = "train.image_encoder" if named else "train.pretrained"
            raise PretrainedFolderError(f"{key}: stage {stage} needs {part}/: {problem}; {_fix(stage, part)}")


DIFFUSION_STAGES = ("base", "interpolation", "superres")


def _fill_from_folder(block: BaseModel, folder: dict[str, Any], keys: Iterable[str], where: str) -> BaseModel:
    """``block`` with each of ``keys`` it does not set taken from the folder's scheduler config;
    a setting that differs from the folder is kept with a warning."""
    updates = {}
    for key in keys:
        if key not in folder:
            continue
        if key not in block.model_fields_set:
            updates[key] = folder[key]
        elif getattr(block, key) != folder[key]:
            log.warning("train.%s.%s: %s overrides the pretrained scheduler's %s", where, key, getattr(block, key), folder[key])
    return block.model_copy(update=updates)


def with_folder_defaults(config: TrainConfig) -> TrainConfig:
    """Defaults that fit the pretrained folder: ``base.image_conditioning`` ``auto`` decided by
    the image encoder, and the noise schedule and each diffusion stage's ``prediction_type``
    from the folder's ``scheduler/`` unless set (SD 2.1 is v-prediction)."""
    updates: dict[str, Any] = {"base": config.base.model_copy(update={"image_conditioning": image_conditioning(config)})}
    path = Path(config.pretrained).expanduser() / "scheduler" / "scheduler_config.json"
    if path.is_file():
        folder = {"prediction_type": "epsilon", **json.loads(path.read_text())}
        schedule = config.noise_schedule
        updates["noise_schedule"] = _fill_from_folder(schedule, folder, type(schedule).model_fields, "noise_schedule")
        for stage in DIFFUSION_STAGES:
            block = updates.get(stage, config.stage(stage))
            updates[stage] = _fill_from_folder(block, folder, ("prediction_type",), stage)
    filled = config.model_copy(update=updates)
    check_noise_schedule(filled)
    return filled


class NoiseScheduleError(T2VError, ValueError):
    """A stage's prediction type cannot be sampled under the run's noise schedule."""


def check_noise_schedule(config: TrainConfig) -> None:
    """A zero terminal SNR schedule leaves no signal at its last step, where an epsilon prediction
    says nothing about the clip (sampling would divide by zero): only v-prediction works there."""
    if not config.noise_schedule.rescale_betas_zero_snr:
        return
    epsilon = [stage for stage in DIFFUSION_STAGES if config.stage(stage).prediction_type == "epsilon"]
    if epsilon:
        raise NoiseScheduleError(
            f"train.noise_schedule.rescale_betas_zero_snr needs v-prediction, but {', '.join(epsilon)} predict "
            "epsilon: set train.<stage>.prediction_type: v_prediction or turn the rescaling off")
