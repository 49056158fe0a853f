"""VidRD ("Reuse and Diffuse") long-video sampling with one clip model.

Clip ``k+1`` (N frames) shares ``M = overlap`` frames with clip ``k``. Three rules
tie the clips together, as the official pipeline (anonymous0x233/ReuseAndDiffuse,
``model/pipeline.py``) runs them; overlap frame ``j`` always follows the previous
clip's frame ``N-1-j`` (the paper's ``z^{i-1, N-j-1}``: the reversed order):

* Frame-level Noise Reversion (FNR): the next clip's initial noise is the
  previous clip's initial noise with the frame order reversed,
  ``z_T[k+1, j] = z_T[k, N-1-j]`` for the overlap frames ``j < M``.
* Past-dependent Noise Sampling (PNS): the other frames mix that reversed
  noise with fresh noise, ``a / sqrt(1 + a^2) * z_T[k, N-1-j] + eps`` with
  ``eps ~ N(0, 1 / (1 + a^2))`` so the variance stays 1.
* Denoising with Staged Guidance (DSG): the *input* of DDIM step ``i`` (of ``S``)
  takes, for overlap frame ``j``, the previous clip's input of step ``i`` at frame
  ``N-1-j`` while ``i < (M - j) * S * beta / M``: early overlap frames follow the
  past longest (at S = 25, M = 4, beta = 0.4: 10, 8, 5 and 3 steps).

Output (``VidRDConfig.output``): ``"new_frames"`` (default) keeps clip 1 whole and
only the ``N - M`` frames each later clip adds, ``N + (n - 1)(N - M)`` frames, so
the overlap frames (which repeat the previous clip's last frames, reversed) are not
shown twice; ``"whole_clips"`` concatenates the ``n`` clips whole, ``n * N`` frames,
as the official code does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from modeling.samplers.ddim import ddim_sample
from modeling.samplers.noise_prior import video_noise

VidRDOutput = Literal["new_frames", "whole_clips"]


@dataclass
class VidRDConfig:
    """Public VidRD defaults: 4 overlap frames, a = 4, beta = 0.4, 50 DDIM steps."""

    num_clips: int = 2
    overlap: int = 4
    alpha: float = 4.0
    beta: float = 0.4
    num_inference_steps: int = 50
    eta: float = 0.0
    output: VidRDOutput = "new_frames"

    def num_frames(self, clip_len: int) -> int:
        if self.output == "whole_clips":
            return self.num_clips * clip_len
        return clip_len + (self.num_clips - 1) * (clip_len - self.overlap)


@dataclass
class VidRDTrace:
    """What each clip started from and passed through (kept for inspection and tests)."""

    initial_noise: list[torch.Tensor] = field(default_factory=list)  # per clip, (b, c, N, h, w)
    step_inputs: list[list[torch.Tensor]] = field(default_factory=list)  # per clip, per step: what it denoised
    clips: list[torch.Tensor] = field(default_factory=list)  # per clip, its final latents


def next_clip_noise(
    previous_noise: torch.Tensor, overlap: int, alpha: float, generator: torch.Generator | None,
    frame_correlation: float = 0.0,
) -> torch.Tensor:
    """FNR for the overlap frames, PNS for the rest; ``(b, c, N, h, w)`` -> same shape. The fresh
    part follows the base's noise prior (``modeling.samplers.noise_prior``), so every clip's noise does."""
    reversed_noise = previous_noise.flip(2)
    fresh = video_noise(tuple(previous_noise.shape), frame_correlation, generator, previous_noise.device,
                        previous_noise.dtype)
    scale = math.sqrt(1.0 + alpha**2)
    past_dependent = (alpha / scale) * reversed_noise + fresh * (1.0 / scale)
    return torch.cat([reversed_noise[:, :, :overlap], past_dependent[:, :, overlap:]], dim=2)


def staged_guidance_frames(step_index: int, overlap: int, beta: float, num_steps: int) -> list[int]:
    """Overlap frames ``j`` whose input at DDIM step ``step_index`` (of ``num_steps``) is the
    previous clip's (DSG, official schedule ``i < (M - j) * S * beta / M``)."""
    return [j for j in range(overlap) if step_index < (overlap - j) * num_steps * beta / overlap]


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
    frame_correlation: float = 0.0,
) -> torch.Tensor:
    """Latents ``(b, c, config.num_frames(N), h, w)`` of ``config.num_clips`` chained clips of ``clip_shape``.

    A ``trace`` passed in is filled with every clip's initial noise, step inputs and result.
    ``frame_correlation``: the base's mixed noise prior (``modeling.samplers.noise_prior``), 0 in VidRD.
    """
    clip_len, overlap, steps = clip_shape[2], config.overlap, config.num_inference_steps
    if not 0 < overlap < clip_len:
        raise ValueError(f"overlap must be in 1..{clip_len - 1}, got {overlap}")
    noise = video_noise(clip_shape, frame_correlation, generator, device, dtype)
    previous_inputs: list[torch.Tensor] | None = None  # previous clip's input of each step, frames reversed
    pieces: list[torch.Tensor] = []
    for clip_index in range(config.num_clips):
        if clip_index > 0:
            noise = next_clip_noise(noise, overlap, config.alpha, generator, frame_correlation)
        inputs = [noise]  # step 0 denoises the initial noise (FNR already holds the past there)

        def reuse_past(step_index: int, timestep: torch.Tensor, latents: torch.Tensor) -> torch.Tensor | None:
            next_step = step_index + 1  # ddim_sample calls back after a step with the next step's input
            if next_step == steps:
                return None
            if previous_inputs is not None:
                guided = staged_guidance_frames(next_step, overlap, config.beta, steps)
                if guided:
                    latents = latents.clone()
                    latents[:, :, guided] = previous_inputs[next_step][:, :, guided]
            inputs.append(latents)
            return latents

        latents = ddim_sample(
            denoiser,
            noise,
            scheduler_config=scheduler_config,
            num_inference_steps=steps,
            eta=config.eta,
            generator=generator,
            callback=reuse_past,
            progress=progress,
        )
        if trace is not None:
            trace.initial_noise.append(noise)
            trace.step_inputs.append(inputs)
            trace.clips.append(latents)
        keep_whole = clip_index == 0 or config.output == "whole_clips"
        pieces.append(latents if keep_whole else latents[:, :, overlap:])
        previous_inputs = [step_input.flip(2) for step_input in inputs]
    return torch.cat(pieces, dim=2)
