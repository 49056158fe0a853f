"""VidRD ("Reuse and Diffuse") long-video sampling with one clip model.

Clip ``k+1`` (N frames) starts with the last ``M = overlap`` frames of clip
``k`` and adds ``N - M`` new ones, so ``n`` clips give
``N + (n - 1) * (N - M)`` frames. Three rules tie the clips together:

* Frame-level Noise Reversion (FNR): the next clip's initial noise is the
  previous clip's initial noise with the frame order reversed,
  ``z_T[k+1, j] = z_T[k, N-1-j]`` for the overlap frames ``j < M``.
* Past-dependent Noise Sampling (PNS): the other frames mix that reversed
  noise with fresh noise, ``a / sqrt(1 + a^2) * z_T[k, N-1-j] + eps`` with
  ``eps ~ N(0, 1 / (1 + a^2))`` so the variance stays 1.
* Denoising with Staged Guidance (DSG): at the DDIM step of timestep ``t``,
  overlap frame ``j`` takes the previous clip's latent of the frame it
  overlaps (``N - M + j``) at the same step while
  ``t > (1 - beta) T + beta T j / M`` (``T`` = training timesteps): early
  overlap frames follow the past longest, later ones are freed sooner.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from modeling.samplers.ddim import ddim_sample, gaussian_noise, make_ddim_scheduler


@dataclass
class VidRDConfig:
    """Public VidRD defaults: 4 overlap frames, a = 4, beta = 0.4, 50 DDIM steps."""

    num_clips: int = 2
    overlap: int = 4
    alpha: float = 4.0
    beta: float = 0.4
    num_inference_steps: int = 50
    eta: float = 0.0

    def num_frames(self, clip_len: int) -> int:
        return clip_len + (self.num_clips - 1) * (clip_len - self.overlap)


@dataclass
class VidRDTrace:
    """What each clip started from and passed through (kept for inspection and tests)."""

    initial_noise: list[torch.Tensor] = field(default_factory=list)  # per clip, (b, c, N, h, w)
    trajectories: list[list[torch.Tensor]] = field(default_factory=list)  # per clip, per step, after the step


def next_clip_noise(
    previous_noise: torch.Tensor, overlap: int, alpha: float, generator: torch.Generator | None
) -> torch.Tensor:
    """FNR for the overlap frames, PNS for the rest; ``(b, c, N, h, w)`` -> same shape."""
    reversed_noise = previous_noise.flip(2)
    fresh = gaussian_noise(tuple(previous_noise.shape), generator, previous_noise.device, previous_noise.dtype)
    scale = math.sqrt(1.0 + alpha**2)
    past_dependent = (alpha / scale) * reversed_noise + fresh / scale
    return torch.cat([reversed_noise[:, :, :overlap], past_dependent[:, :, overlap:]], dim=2)


def staged_guidance_frames(timestep: int, overlap: int, beta: float, num_train_timesteps: int) -> list[int]:
    """Overlap frame indices ``j`` that still copy the previous clip at ``timestep`` (DSG rule)."""
    total = num_train_timesteps
    return [j for j in range(overlap) if timestep > (1.0 - beta) * total + beta * total * j / overlap]


def vidrd_sample(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    clip_shape: tuple[int, int, int, int, int],
    config: VidRDConfig,
    *,
    scheduler_config: Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    trace: VidRDTrace | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Latents ``(b, c, N + (n-1)(N-M), h, w)`` of ``config.num_clips`` chained clips of ``clip_shape``.

    A ``trace`` passed in is filled with every clip's initial noise and per-step latents.
    """
    clip_len, overlap = clip_shape[2], config.overlap
    if not 0 < overlap < clip_len:
        raise ValueError(f"overlap must be in 1..{clip_len - 1}, got {overlap}")
    num_train_timesteps = make_ddim_scheduler(scheduler_config).config.num_train_timesteps
    noise = gaussian_noise(clip_shape, generator, device, dtype)
    previous_overlap: list[torch.Tensor] | None = None  # previous clip's last M frames after each step
    pieces: list[torch.Tensor] = []
    for clip_index in range(config.num_clips):
        if clip_index > 0:
            noise = next_clip_noise(noise, overlap, config.alpha, generator)
        current_overlap: list[torch.Tensor] = []
        trajectory: list[torch.Tensor] = []

        def reuse_past(step_index: int, timestep: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
            if previous_overlap is not None:
                latents = latents.clone()
                for j in staged_guidance_frames(int(timestep), overlap, config.beta, num_train_timesteps):
                    latents[:, :, j] = previous_overlap[step_index][:, :, j]
            current_overlap.append(latents[:, :, clip_len - overlap :])
            if trace is not None:
                trajectory.append(latents)
            return latents

        latents = ddim_sample(
            denoiser,
            noise,
            scheduler_config=scheduler_config,
            num_inference_steps=config.num_inference_steps,
            eta=config.eta,
            generator=generator,
            callback=reuse_past,
            progress=progress,
        )
        if trace is not None:
            trace.initial_noise.append(noise)
            trace.trajectories.append(trajectory)
        pieces.append(latents if clip_index == 0 else latents[:, :, overlap:])
        previous_overlap = current_overlap
    return torch.cat(pieces, dim=2)
