"""DDIM sampling of video latents with classifier-free guidance.

The loop is nanoGPT-plain: build a fresh ``DDIMScheduler`` from a config, walk
its timesteps, and let one guided forward (unconditional and conditional halves
batched together) predict each step. A per-step ``callback`` may return new
latents, which is how the long-video samplers splice in reused frames.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import DDIMScheduler
from tqdm.auto import tqdm

StepCallback = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None]


def make_generator(seed: int | None) -> torch.Generator | None:
    """A CPU generator: noise drawn on CPU is the same whatever device the model runs on."""
    return None if seed is None else torch.Generator(device="cpu").manual_seed(seed)


def gaussian_noise(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


def apply_guidance(output: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Batched ``[uncond, cond]`` prediction -> ``uncond + s * (cond - uncond)``."""
    uncond, cond = output.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def _stack_halves(uncond_value: Any, cond_value: Any) -> Any:
    if isinstance(cond_value, torch.Tensor):
        return torch.cat([uncond_value, cond_value])
    return cond_value  # flags such as is_image apply to both halves


@dataclass
class VideoDenoiser:
    """A video UNet bound to its text conditioning: ``(latents, t) -> model output``.

    ``model_kwargs`` (conditioning, fps, class_labels, ...) go to the UNet as
    they are; ``uncond_model_kwargs`` overrides some of them for the
    unconditional half (e.g. dropped context frames of a prediction model).
    Guidance runs when ``uncond_embeds`` is given and the scale is not 1.
    """

    unet: Callable[..., Any]
    text_embeds: torch.Tensor
    uncond_embeds: torch.Tensor | None = None
    guidance_scale: float = 1.0
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    uncond_model_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def guided(self) -> bool:
        return self.uncond_embeds is not None and self.guidance_scale != 1.0

    def __call__(self, latents: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        embeds, kwargs = self.text_embeds, dict(self.model_kwargs)
        if self.guided:
            latents = torch.cat([latents, latents])
            embeds = torch.cat([self.uncond_embeds, self.text_embeds])
            kwargs = {
                name: _stack_halves(self.uncond_model_kwargs.get(name, value), value) for name, value in kwargs.items()
            }
        timesteps = timestep.to(latents.device).expand(latents.shape[0])
        output = self.unet(latents, timesteps, embeds, **kwargs).sample
        return apply_guidance(output, self.guidance_scale) if self.guided else output


# Stable Diffusion's schedule; latents are unbounded, so no x0 clipping to [-1, 1].
LATENT_DDIM_CONFIG: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)


def make_ddim_scheduler(scheduler_config: Mapping[str, Any] | None = None) -> DDIMScheduler:
    """A fresh scheduler per run: ``set_timesteps`` mutates it, so runs never share one."""
    return DDIMScheduler.from_config(dict(scheduler_config or LATENT_DDIM_CONFIG))


def ddim_sample(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    *,
    scheduler_config: Mapping[str, Any] | None = None,
    num_inference_steps: int = 50,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Denoise ``noise`` ``(b, c, f, h, w)`` to clean latents.

    ``callback(step_index, timestep, latents)`` runs after every step with the
    new latents; a tensor it returns replaces them.
    """
    scheduler = make_ddim_scheduler(scheduler_config)
    scheduler.set_timesteps(num_inference_steps, device=noise.device)
    latents = noise * scheduler.init_noise_sigma
    for step_index, timestep in enumerate(tqdm(scheduler.timesteps, disable=not progress)):
        model_input = scheduler.scale_model_input(latents, timestep)
        with torch.no_grad():
            model_output = denoiser(model_input, timestep)
        latents = scheduler.step(model_output, timestep, latents, eta=eta, generator=generator).prev_sample
        if callback is not None:
            replaced = callback(step_index, timestep, latents)
            latents = latents if replaced is None else replaced
    return latents
