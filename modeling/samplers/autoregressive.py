"""VideoLDM-style long videos: a prediction model extends the video clip by clip.

The prediction model is a masked-frame VideoUNet (``modeling.masked_frames``)
trained with 0, 1 or 2 leading context frames and classifier-free dropout of
that context. Each new clip gets the last ``context_frames`` latents of the
video so far as its leading frames and contributes the frames after them, so
``n`` clips of ``N`` frames give ``N + (n - 1) * (N - context_frames)`` frames.
Guidance contrasts (text, context) with (empty prompt, no context), the pair
the context dropout trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from modeling.masked_frames import masked_conditioning, place_context, prediction_mask
from modeling.samplers.ddim import VideoDenoiser, ddim_sample, gaussian_noise


@dataclass
class AutoregressiveConfig:
    num_clips: int = 3
    context_frames: int = 2  # VideoLDM conditions on 1 or 2 frames
    num_inference_steps: int = 50
    eta: float = 0.0

    def num_frames(self, clip_len: int) -> int:
        return clip_len + (self.num_clips - 1) * (clip_len - self.context_frames)


def prediction_conditioning(context: torch.Tensor, clip_len: int) -> torch.Tensor:
    """Context latents ``(b, c, k, h, w)`` -> masked-frame conditioning ``(b, c + 1, clip_len, h, w)``."""
    mask = prediction_mask(clip_len, context.shape[2])
    return masked_conditioning(place_context(context, mask), mask)


def predict_clip(
    denoiser: VideoDenoiser,
    context: torch.Tensor,
    noise: torch.Tensor,
    config: AutoregressiveConfig,
    scheduler_config: Mapping[str, Any] | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """One clip from ``context`` (``k`` = 0, 1 or 2 frames) and its initial ``noise``."""
    clip_len = noise.shape[2]
    no_context = prediction_conditioning(context[:, :, :0], clip_len)
    conditioned = replace(
        denoiser,
        model_kwargs={**denoiser.model_kwargs, "conditioning": prediction_conditioning(context, clip_len)},
        uncond_model_kwargs={**denoiser.uncond_model_kwargs, "conditioning": no_context},
    )
    return ddim_sample(
        conditioned,
        noise,
        scheduler_config=scheduler_config,
        num_inference_steps=config.num_inference_steps,
        eta=config.eta,
        generator=generator,
    )


def autoregressive_sample(
    denoiser: VideoDenoiser,
    clip_shape: tuple[int, int, int, int, int],
    config: AutoregressiveConfig,
    *,
    first_clip: torch.Tensor | None = None,
    scheduler_config: Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Latents ``(b, c, N + (n-1)(N-k), h, w)``; the first clip is ``first_clip`` (e.g. from the
    base model) or predicted from no context."""
    clip_len, context_frames = clip_shape[2], config.context_frames
    if not 0 < context_frames < clip_len:
        raise ValueError(f"context_frames must be in 1..{clip_len - 1}, got {context_frames}")
    if first_clip is None:
        empty = torch.zeros(*clip_shape[:2], 0, *clip_shape[3:], device=device, dtype=dtype)
        noise = gaussian_noise(clip_shape, generator, device, dtype)
        first_clip = predict_clip(denoiser, empty, noise, config, scheduler_config, generator)
    video = first_clip
    for _ in range(config.num_clips - 1):
        noise = gaussian_noise(clip_shape, generator, device, dtype)
        clip = predict_clip(denoiser, video[:, :, -context_frames:], noise, config, scheduler_config, generator)
        video = torch.cat([video, clip[:, :, context_frames:]], dim=2)
    return video
