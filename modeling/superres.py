"""Video super-resolution (Make-A-Video SR, VideoLDM upsampler, cascaded diffusion).

The SR model is an inflated UNet in the SD x4 upscaler layout: its 2D config has a
class embedding (``num_class_embeds``) that receives the noise level, and its
``conditioning`` input is the noise-augmented low-res video upsampled to the target
size. :class:`TiledVideoUNet` runs it patch-wise on frames too large for one pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from einops import rearrange
from torch import nn

from modeling.video_unet import VideoUNet, VideoUNetOutput, batch_timesteps


def upsample_video(video: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """(b, c, f, h, w) -> (b, c, f, H, W), each frame resized."""
    batch = video.shape[0]
    frames = rearrange(video, "b c f h w -> (b f) c h w")
    frames = F.interpolate(frames, size=size, mode=mode, align_corners=False if mode != "nearest" else None)
    return rearrange(frames, "(b f) c h w -> b c f h w", b=batch)


def noise_augment(
    low_res: torch.Tensor,
    noise_level: torch.Tensor | int,
    scheduler: DDPMScheduler,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Forward-diffuse the low-res video to ``noise_level`` (scalar or (b,)) so the SR model
    learns to tolerate the base model's artefacts."""
    levels = batch_timesteps(noise_level, low_res.shape[0], low_res.device).long()
    noise = torch.randn(low_res.shape, generator=generator, device=low_res.device, dtype=low_res.dtype)
    return scheduler.add_noise(low_res, noise, levels)


def superres_conditioning(
    low_res: torch.Tensor,
    size: tuple[int, int],
    noise_level: torch.Tensor | int,
    scheduler: DDPMScheduler,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (conditioning (b, c, f, H, W), class_labels (b,)) for VideoUNet.forward."""
    noised = noise_augment(low_res, noise_level, scheduler, generator)
    labels = batch_timesteps(noise_level, low_res.shape[0], low_res.device).long()
    return upsample_video(noised, size), labels


def initial_noise(
    shape: tuple[int, int, int, int, int],
    generator: torch.Generator | None = None,
    same_on_every_frame: bool = False,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Starting latents (b, c, f, h, w); per-frame SR shares one noise image across frames
    so independently upsampled frames do not flicker."""
    batch, channels, num_frames, height, width = shape
    frames_drawn = 1 if same_on_every_frame else num_frames
    noise = torch.randn(batch, channels, frames_drawn, height, width, generator=generator, device=device, dtype=dtype)
    return noise.expand(shape).contiguous()


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``length``; the last tile is aligned to the end."""
    if tile >= length:
        return [0]
    stride = tile - overlap
    if stride <= 0:
        raise ValueError(f"tile {tile} must exceed overlap {overlap}")
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _ramp(length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Weights rising linearly from the tile edges: overlapping tiles cross-fade."""
    positions = torch.arange(length, device=device, dtype=dtype)
    return torch.minimum(positions + 1, length - positions)


def tiled_apply(
    fn: Callable[[slice, slice], torch.Tensor], height: int, width: int, tile: int, overlap: int
) -> torch.Tensor:
    """Run ``fn(rows, cols) -> (..., th, tw)`` over overlapping tiles of an (height, width)
    plane and blend the results with linear ramps. A single covering tile is returned as is."""
    row_starts, col_starts = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    tile_h, tile_w = min(tile, height), min(tile, width)
    if len(row_starts) == 1 and len(col_starts) == 1:
        return fn(slice(0, height), slice(0, width))
    total = weight_sum = weights = None
    for top in row_starts:
        for left in col_starts:
            rows, cols = slice(top, top + tile_h), slice(left, left + tile_w)
            out = fn(rows, cols)
            if total is None:  # allocated once the output's leading dims, dtype and device are known
                total = out.new_zeros(*out.shape[:-2], height, width)
                weight_sum = out.new_zeros(height, width)
                weights = _ramp(tile_h, out.device, out.dtype)[:, None] * _ramp(tile_w, out.device, out.dtype)[None]
            total[..., rows, cols] += out * weights
            weight_sum[rows, cols] += weights
    return total / weight_sum


class TiledVideoUNet(nn.Module):
    """VideoUNet's forward contract, run patch-wise over overlapping spatial tiles.

    ``per_frame=True`` is per-frame SR: every row skips the temporal layers (pair it
    with ``initial_noise(..., same_on_every_frame=True)``).
    """

    def __init__(self, model: VideoUNet, tile_size: int, tile_overlap: int = 8, per_frame: bool = False) -> None:
        super().__init__()
        self.model = model
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.per_frame = per_frame

    @property
    def config(self):
        return self.model.config

    @property
    def in_channels(self) -> int:
        return self.model.in_channels

    @property
    def out_channels(self) -> int:
        return self.model.out_channels

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        *,
        conditioning: torch.Tensor | None = None,
        fps: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        is_image: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> VideoUNetOutput | tuple[torch.Tensor]:
        if self.per_frame:
            is_image = torch.ones(sample.shape[0], dtype=torch.bool, device=sample.device)

        def run_tile(rows: slice, cols: slice) -> torch.Tensor:
            return self.model(
                sample[..., rows, cols],
                timestep,
                encoder_hidden_states,
                conditioning=None if conditioning is None else conditioning[..., rows, cols],
                fps=fps,
                class_labels=class_labels,
                is_image=is_image,
            ).sample

        out = tiled_apply(run_tile, sample.shape[-2], sample.shape[-1], self.tile_size, self.tile_overlap)
        return VideoUNetOutput(sample=out) if return_dict else (out,)
