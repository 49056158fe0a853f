"""The noise a video diffusion stage is trained on and sampled from: independent per frame, or
frames that share part of it (the mixed noise prior of PYoCo, Ge et al. 2023).

Each frame's noise is ``sqrt(c) * shared + sqrt(1 - c) * own``: every element keeps unit
variance, and two frames correlate by ``c``. Why: an image model inflated into a video model
turns independent noise into frames that disagree (the background, where the shape is), and a
short fine-tune does not teach the temporal layers to undo that; started from a shared
component, the frames agree from the first sampling step, and the temporal layers only have to
learn what changes between them. A stage trained with ``c`` must be sampled with the same ``c``.
"""

from __future__ import annotations

import math

import torch

from modeling.samplers.ddim import gaussian_noise


def mix_frames(own: torch.Tensor, shared: torch.Tensor, correlation: float) -> torch.Tensor:
    """``(b, c, f, h, w)`` per-frame noise and ``(b, c, 1, h, w)`` shared noise -> frames that
    correlate by ``correlation`` (0 returns ``own``)."""
    if not 0 <= correlation < 1:
        raise ValueError(f"frame noise correlation must be in [0, 1), got {correlation}")
    if correlation == 0:
        return own
    return math.sqrt(correlation) * shared + math.sqrt(1 - correlation) * own


def video_noise(shape: tuple[int, ...], correlation: float, generator: torch.Generator | None,
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sampling's initial noise ``(b, c, f, h, w)`` under the prior (drawn on CPU, as ``gaussian_noise``)."""
    own = gaussian_noise(shape, generator, device, dtype)
    if correlation == 0:
        return own
    shared = gaussian_noise((*shape[:2], 1, *shape[3:]), generator, device, dtype)
    return mix_frames(own, shared, correlation)


def training_noise(latents: torch.Tensor, correlation: float) -> torch.Tensor:
    """Noise like ``latents`` under the prior, from torch's global generator on their device."""
    own = torch.randn_like(latents)
    return own if correlation == 0 else mix_frames(own, torch.randn_like(latents[:, :, :1]), correlation)
