"""Stable Diffusion 1.5 and 2.1 folders in diffusers layout, from their published configs with
random weights: exactly what a user downloads (``unet/``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``, no ``image_encoder/``), minus the training.

``reduced=True`` keeps SD's block structure (four down blocks, three with cross-attention,
two layers per block, SD's attention heads, the VAE's four levels, CLIP's real BPE tokenizer,
SD's scheduler) at a few channels, so tests and the demo run through the same pre-flight and
loaders as a real folder in seconds; the full width is what ``benchmarks/sd_scale.py`` measures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from pipelines.train.t2i import write_clip_tokenizer

SdVersion = Literal["1.5", "2.1"]
SD_VERSIONS: tuple[str, ...] = ("1.5", "2.1")

# runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-2-1, unet/config.json
_UNET = dict(
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    norm_num_groups=32,
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
)
_UNET_VERSION: dict[str, dict[str, Any]] = {
    "1.5": dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8),
    "2.1": dict(
        sample_size=96, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
        use_linear_projection=True, upcast_attention=True,
    ),
}
# CLIP ViT-L/14's text tower (1.5, 123M) and OpenCLIP ViT-H/14's (2.1, 340M), text_encoder/config.json
_TEXT: dict[str, dict[str, Any]] = {
    "1.5": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                projection_dim=768, hidden_act="quick_gelu"),
    "2.1": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                projection_dim=512, hidden_act="gelu"),
}
_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    scaling_factor=0.18215,
)
# scheduler/scheduler_config.json as published: 1.5 names no prediction type (epsilon), 2.1 is v-prediction
_SCHEDULER: dict[str, dict[str, Any]] = {
    "1.5": {"_class_name": "PNDMScheduler", "skip_prk_steps": True},
    "2.1": {"_class_name": "DDIMScheduler", "prediction_type": "v_prediction", "clip_sample": False},
}
_SCHEDULE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                 set_alpha_to_one=False, steps_offset=1, trained_betas=None)
MAX_TOKENS = 77

# The reduced folder: SD's structure at a few channels, GroupNorm groups that divide them.
_REDUCED_UNET = dict(block_out_channels=(32, 32, 64, 64), norm_num_groups=8)
_REDUCED_HEADS = {"1.5": 8, "2.1": (1, 2, 4, 4)}  # 2.1's (5, 10, 20, 20) over 5: heads must divide 32 / 64 channels
_REDUCED_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, projection_dim=32)
_REDUCED_VAE = dict(block_out_channels=(8, 16, 32, 32), norm_num_groups=8)


def unet_config(version: SdVersion, reduced: bool = False) -> dict[str, Any]:
    config = {**_UNET, **_UNET_VERSION[version]}
    if reduced:
        cross = _REDUCED_TEXT["hidden_size"]
        config.update(_REDUCED_UNET, sample_size=8, cross_attention_dim=cross, attention_head_dim=_REDUCED_HEADS[version])
    return config


def text_config(version: SdVersion, reduced: bool = False) -> CLIPTextConfig:
    # bos 0 / eos 2 / pad 1 as the published configs: transformers then pools at the highest id (end of text)
    sizes = {**_TEXT[version], **(_REDUCED_TEXT if reduced else {})}
    return CLIPTextConfig(vocab_size=49408, max_position_embeddings=MAX_TOKENS, bos_token_id=0, eos_token_id=2,
                          pad_token_id=1, **sizes)


def vae_config(version: SdVersion, reduced: bool = False) -> dict[str, Any]:
    return {**_VAE, "sample_size": 512 if version == "1.5" else 768, **(_REDUCED_VAE if reduced else {})}


def write_sd_folder(directory: str | Path, version: SdVersion = "1.5", reduced: bool = False, seed: int = 0) -> Path:
    """Build SD ``version`` with seeded random weights and save it under ``directory``; each part is
    saved and freed before the next, so the peak is the largest part (the UNet), not the sum."""
    directory = Path(directory)
    torch.manual_seed(seed)
    write_clip_tokenizer(directory / "tokenizer", max_length=MAX_TOKENS)
    builders = {
        "text_encoder": lambda: CLIPTextModel(text_config(version, reduced)),
        "vae": lambda: AutoencoderKL(**vae_config(version, reduced)),
        "unet": lambda: UNet2DConditionModel(**unet_config(version, reduced)),
    }
    for name, build in builders.items():
        build().save_pretrained(directory / name, safe_serialization=True)
    scheduler = {**_SCHEDULE, **_SCHEDULER[version], "_diffusers_version": "0.35.0"}
    (directory / "scheduler").mkdir(parents=True, exist_ok=True)
    (directory / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2))
    (directory / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.35.0",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", scheduler["_class_name"]],
    }, indent=2))
    return directory
