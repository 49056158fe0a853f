"""Samplers for video latents: DDIM with guidance, VidRD and autoregressive long videos."""

from modeling.samplers.autoregressive import AutoregressiveConfig, autoregressive_sample
from modeling.samplers.ddim import (
    LATENT_DDIM_CONFIG,
    VideoDenoiser,
    apply_guidance,
    ddim_sample,
    gaussian_noise,
    make_ddim_scheduler,
    make_generator,
)
from modeling.samplers.vidrd import VidRDConfig, VidRDTrace, next_clip_noise, staged_guidance_frames, vidrd_sample

__all__ = [
    "LATENT_DDIM_CONFIG",
    "AutoregressiveConfig",
    "VidRDConfig",
    "VidRDTrace",
    "VideoDenoiser",
    "apply_guidance",
    "autoregressive_sample",
    "ddim_sample",
    "gaussian_noise",
    "make_ddim_scheduler",
    "make_generator",
    "next_clip_noise",
    "staged_guidance_frames",
    "vidrd_sample",
]
