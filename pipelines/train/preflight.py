"""Pre-flight: check the pretrained folder against what the configured stages load,
before Ray starts, so a missing part fails in one line that names the key and the fix
instead of an ``OSError`` deep inside a worker after minutes of start-up."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from pipelines.train.config import TrainConfig
from storage.errors import T2VError

log = logging.getLogger(__name__)
WEIGHTS = ("*.safetensors", "*.bin")
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class PretrainedFolderError(T2VError):
    """The pretrained folder lacks a part a configured stage needs."""


def stage_parts(stage: str, config: TrainConfig) -> tuple[str, ...]:
    """The subfolders of the pretrained folder that ``stage`` loads (mirrors objectives.encoder_needs)."""
    diffusion = ("unet", "vae", "text_encoder", "tokenizer")
    return {
        "base": diffusion + (("image_encoder",) if config.base.image_conditioning else ()),
        "interpolation": diffusion,
        "superres": diffusion,
        "vae_decoder": ("vae",),
        "prior": ("text_encoder", "tokenizer", "image_encoder"),
    }[stage]


def _fix(stage: str, part: str) -> str:
    if stage == "base" and part == "image_encoder":
        return "set train.base.image_conditioning: false (SD 1.5 / 2.1 ship no image encoder) or add a CLIP image encoder there"
    if stage == "prior":
        return "the prior learns CLIP image embeddings: add a CLIP image encoder there or train other stages"
    return "point train.pretrained at a Stable Diffusion folder in diffusers layout"


def _problem(folder: Path, part: str) -> str | None:
    sub = folder / part
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
        problem = _problem(folder, part)
        if problem:
            raise PretrainedFolderError(f"train.pretrained: stage {stage} needs {part}/: {problem}; {_fix(stage, part)}")


DIFFUSION_STAGES = ("base", "interpolation", "superres")


def with_folder_defaults(config: TrainConfig) -> TrainConfig:
    """Take each diffusion stage's ``prediction_type`` from the folder's ``scheduler/`` unless set
    (SD 2.1 is v-prediction); a setting that overrides the folder is kept with a warning."""
    path = Path(config.pretrained).expanduser() / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        return config
    folder_type = json.loads(path.read_text()).get("prediction_type", "epsilon")
    updates = {}
    for stage in DIFFUSION_STAGES:
        block = config.stage(stage)
        if "prediction_type" not in block.model_fields_set:
            updates[stage] = block.model_copy(update={"prediction_type": folder_type})
        elif block.prediction_type != folder_type:
            log.warning(
                "train.%s.prediction_type: %s overrides the pretrained scheduler's %s",
                stage, block.prediction_type, folder_type,
            )
    return config.model_copy(update=updates)
