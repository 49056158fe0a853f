"""Temporal-aware VAE decoder (VideoLDM, VidRD).

A diffusers ``AutoencoderKL`` whose decoder gets a temporal convolution block
after every ResNet block. Each block is residual and its last conv starts at
zero, so right after :meth:`TemporalVAE.from_vae` decoding a video equals
decoding its frames one by one with the 2D VAE. Only the temporal blocks are
meant to be trained; the encoder is frozen.

The temporal blocks are attached with forward hooks on diffusers' own ResNet
modules instead of replacing them, so the wrapped VAE keeps its original
parameter names (``vae.decoder.up_blocks.0.resnets.0.conv1.weight``...) and a
stock Stable Diffusion VAE state dict loads into it unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
from diffusers import AutoencoderKL, ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange
from torch import nn

from modeling.adapters import AdapterLoadingMixin


class TemporalConvBlock(nn.Module):
    """Residual (norm, SiLU, conv over time) x 2 on ``((b f), c, h, w)`` features.

    Kernels span only the frame axis: spatial mixing is the frozen decoder's job.
    """

    def __init__(self, channels: int, kernel_size: int = 3, norm_groups: int = 32):
        super().__init__()
        groups = _group_count(channels, norm_groups)
        padding = (kernel_size // 2, 0, 0)
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=padding)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=padding)
        self.act = nn.SiLU()
        # Zero output conv: the block starts as the identity (the paper's zero-init + residual).
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, frames: torch.Tensor, num_frames: int) -> torch.Tensor:
        video = rearrange(frames, "(b f) c h w -> b c f h w", f=num_frames)
        update = self.conv1(self.act(self.norm1(video)))
        update = self.conv2(self.act(self.norm2(update)))
        return frames + rearrange(update, "b c f h w -> (b f) c h w")


def _group_count(channels: int, preferred: int) -> int:
    """Largest group count <= ``preferred`` dividing ``channels`` (tiny test configs)."""
    return next(g for g in range(min(preferred, channels), 0, -1) if channels % g == 0)


def _decoder_resnets(vae: AutoencoderKL) -> list[nn.Module]:
    """Decoder ResNet blocks in execution order: mid block first, then up blocks."""
    decoder = vae.decoder
    return [*decoder.mid_block.resnets, *(r for block in decoder.up_blocks for r in block.resnets)]


def _without_private_keys(config: dict) -> dict:
    return {key: value for key, value in config.items() if not key.startswith("_")}


class TemporalVAE(AdapterLoadingMixin, ModelMixin, ConfigMixin):
    """``AutoencoderKL`` with zero-initialised residual temporal convs in its decoder.

    Latents here are *scaled* latents (multiplied by the VAE's ``scaling_factor``),
    the space the diffusion models work in.
    """

    adapter_source = ("vae", "vae.")  # the wrapped VAE is a pretrained folder's vae/

    @register_to_config
    def __init__(self, vae_config: dict, temporal_kernel_size: int = 3, norm_groups: int = 32):
        super().__init__()
        self.vae = AutoencoderKL.from_config(vae_config)
        resnets = _decoder_resnets(self.vae)
        self.temporal_convs = nn.ModuleList(
            TemporalConvBlock(resnet.out_channels, temporal_kernel_size, norm_groups) for resnet in resnets
        )
        for index, resnet in enumerate(resnets):
            resnet.register_forward_hook(partial(self._temporal_hook, index))
        self._num_frames: int | None = None
        self.freeze_non_temporal()

    @classmethod
    def from_vae(cls, vae: AutoencoderKL, temporal_kernel_size: int = 3, norm_groups: int = 32) -> "TemporalVAE":
        """Wrap a pretrained 2D VAE; its weights are copied, temporal blocks start at identity."""
        model = cls(_without_private_keys(dict(vae.config)), temporal_kernel_size, norm_groups)
        model.vae.load_state_dict(vae.state_dict())
        model.to(vae.device)
        if vae.dtype != model.dtype:
            model.to(vae.dtype)
        return model.eval()  # like from_pretrained: inference mode until a trainer says otherwise

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    def freeze_non_temporal(self) -> None:
        """Only the temporal convs train (VidRD fine-tunes just these)."""
        self.vae.requires_grad_(False)
        self.temporal_convs.requires_grad_(True)

    def temporal_parameters(self) -> Iterator[nn.Parameter]:
        return self.temporal_convs.parameters()

    def _temporal_hook(self, index: int, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if self._num_frames is None:  # plain per-image use of the wrapped VAE
            return output
        return self.temporal_convs[index](output, self._num_frames)

    @contextmanager
    def _frames(self, num_frames: int) -> Iterator[None]:
        self._num_frames = num_frames
        try:
            yield
        finally:
            self._num_frames = None

    @torch.no_grad()
    def encode(
        self, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(b, 3, f, H, W)`` in [-1, 1] -> scaled latents ``(b, c, f, h, w)`` (posterior mode by default)."""
        frames = rearrange(video, "b c f h w -> (b f) c h w")
        posterior = self.vae.encode(frames).latent_dist
        latents = posterior.sample(generator) if sample else posterior.mode()
        return rearrange(latents * self.scaling_factor, "(b f) c h w -> b c f h w", f=video.shape[2])

    def decode(self, latents: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Scaled latents ``(b, c, f, h, w)`` or ``((b f), c, h, w)`` -> video in [-1, 1] of the same layout."""
        is_video = latents.ndim == 5
        if is_video:
            num_frames = latents.shape[2]
            latents = rearrange(latents, "b c f h w -> (b f) c h w")
        if num_frames is None:
            raise ValueError("decode of ((b f), c, h, w) latents needs num_frames")
        if self.vae.use_slicing or self.vae.use_tiling:
            raise ValueError("slicing/tiling would split the frames of a video; disable them on TemporalVAE.vae")
        with self._frames(num_frames):
            frames = self.vae.decode(latents / self.scaling_factor).sample
        return rearrange(frames, "(b f) c h w -> b c f h w", f=num_frames) if is_video else frames


def spatial_scale_factor(vae: TemporalVAE | AutoencoderKL) -> int:
    """Pixels per latent along each side (8 for Stable Diffusion's VAE)."""
    autoencoder = vae.vae if isinstance(vae, TemporalVAE) else vae
    return 2 ** (len(autoencoder.config.block_out_channels) - 1)


def decode_video(vae: TemporalVAE | AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents ``(b, c, f, h, w)`` -> video in [-1, 1]; a plain 2D VAE decodes frame by frame."""
    if isinstance(vae, TemporalVAE):
        return vae.decode(latents)
    frames = rearrange(latents, "b c f h w -> (b f) c h w") / vae.config.scaling_factor
    return rearrange(vae.decode(frames).sample, "(b f) c h w -> b c f h w", f=latents.shape[2])
