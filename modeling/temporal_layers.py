"""Temporal layers that inflate a 2D diffusion UNet into a video UNet.

Spatial layers see frames folded into the batch, ``(b f) c h w``. Every temporal
layer here takes and returns a video ``b c f h w``; :class:`TemporalAdapter`
does the folding, runs the layer as a forward hook on a spatial module, and skips
image rows of joint image-video batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

PositionEncoding = Literal["none", "sinusoidal", "rope"]


@dataclass(frozen=True)
class FrameContext:
    """What the temporal layers need to know about the batch being run."""

    num_frames: int
    video_rows: torch.Tensor | None = None  # bool (b,); None means every row is a video
    fps: torch.Tensor | None = None  # (b,)


class FrameContextSlot:
    """Shared, mutable holder of the current batch's :class:`FrameContext`.

    It stays set after a forward pass on purpose: gradient checkpointing re-runs the
    temporal layers during backward and they must see the same frame layout.
    """

    def __init__(self) -> None:
        self.current: FrameContext | None = None

    def get(self) -> FrameContext:
        if self.current is None:
            raise RuntimeError("temporal layer called outside VideoUNet.forward (no frame context set)")
        return self.current


def sinusoidal_positions(num_frames: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(f, dim) transformer-style sine/cosine encoding of frame indices."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / half)
    angles = torch.arange(num_frames, device=device, dtype=torch.float32)[:, None] * freqs[None]
    encoding = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if dim % 2:
        encoding = F.pad(encoding, (0, 1))
    return encoding.to(dtype)


def apply_rotary(x: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding over the frame axis of ``x: (n, heads, f, d)``."""
    num_frames, head_dim = x.shape[-2], x.shape[-1]
    half = head_dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = torch.arange(num_frames, device=x.device, dtype=torch.float32)[:, None] * freqs[None]
    cos = angles.cos().repeat(1, 2).to(x.dtype)
    sin = angles.sin().repeat(1, 2).to(x.dtype)
    first, second = x[..., :half], x[..., half : 2 * half]
    rotated = torch.cat([-second, first], dim=-1)
    return torch.cat([x[..., : 2 * half] * cos + rotated * sin, x[..., 2 * half :]], dim=-1)


class TemporalConv1d(nn.Module):
    """Make-A-Video pseudo-3D conv: a Conv1d over frames, initialised to identity.

    (A Conv3d with a (k, 1, 1) kernel avoids the layout copies but ran 5x slower on CPU.)
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        nn.init.dirac_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        _, _, _, height, width = video.shape
        series = rearrange(video, "b c f h w -> (b h w) c f")
        series = self.conv(series)
        return rearrange(series, "(b h w) c f -> b c f h w", h=height, w=width)


class TemporalAttention(nn.Module):
    """Self-attention across frames at every pixel (``b c f h w -> (b h w) f c``), residual.

    ``zero_init=True`` zeroes the output projections so the layer starts as identity.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        positions: PositionEncoding = "none",
        zero_init: bool = True,
        ff_mult: int = 0,
    ) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.positions = positions
        self.norm = nn.LayerNorm(channels)
        self.to_qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.to_out = nn.Linear(channels, channels)
        # Optional feed-forward lets the temporal parameter count be sized against other designs.
        self.ff = (
            nn.Sequential(
                nn.LayerNorm(channels),
                nn.Linear(channels, ff_mult * channels),
                nn.GELU(),
                nn.Linear(ff_mult * channels, channels),
            )
            if ff_mult
            else None
        )
        if zero_init:
            outputs = [self.to_out] + ([self.ff[-1]] if self.ff is not None else [])
            for linear in outputs:
                nn.init.zeros_(linear.weight)
                nn.init.zeros_(linear.bias)

    def attend(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.norm(tokens)
        if self.positions == "sinusoidal":
            hidden = hidden + sinusoidal_positions(hidden.shape[1], hidden.shape[2], hidden.device, hidden.dtype)
        query, key, value = rearrange(
            self.to_qkv(hidden), "n f (three heads d) -> three n heads f d", three=3, heads=self.num_heads
        )
        if self.positions == "rope":
            query, key = apply_rotary(query), apply_rotary(key)
        attended = F.scaled_dot_product_attention(query, key, value)
        return self.to_out(rearrange(attended, "n heads f d -> n f (heads d)"))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        _, _, _, height, width = video.shape
        tokens = rearrange(video, "b c f h w -> (b h w) f c")
        tokens = tokens + self.attend(tokens)
        if self.ff is not None:
            tokens = tokens + self.ff(tokens)
        return rearrange(tokens, "(b h w) f c -> b c f h w", h=height, w=width)


class TemporalConvBlock(nn.Module):
    """VideoLDM 3D-conv residual block: (GroupNorm, SiLU, Conv3d) x 2 plus skip."""

    def __init__(self, channels: int, norm_groups: int, temporal_kernel: int = 3, spatial_kernel: int = 3) -> None:
        super().__init__()
        kernel = (temporal_kernel, spatial_kernel, spatial_kernel)
        padding = tuple(k // 2 for k in kernel)
        self.layers = nn.Sequential(
            nn.GroupNorm(norm_groups, channels),
            nn.SiLU(),
            nn.Conv3d(channels, channels, kernel, padding=padding),
            nn.GroupNorm(norm_groups, channels),
            nn.SiLU(),
            nn.Conv3d(channels, channels, kernel, padding=padding),
        )

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return video + self.layers(video)


class AlphaBlend(nn.Module):
    """VideoLDM merge ``alpha * spatial + (1 - alpha) * temporal`` with a learned alpha.

    alpha starts at exactly 1 ("all spatial"). It is clamped to [0, 1] in value with a
    straight-through gradient, so it still learns at the boundary and cannot get stuck
    above 1 (a plain clamp would zero its gradient there; a sigmoid never reaches 1).
    """

    def __init__(self) -> None:
        super().__init__()
        self.alpha_raw = nn.Parameter(torch.ones(()))

    @property
    def alpha(self) -> torch.Tensor:
        return self.alpha_raw + (self.alpha_raw.clamp(0.0, 1.0) - self.alpha_raw).detach()

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.to(spatial.dtype)
        return alpha * spatial + (1 - alpha) * temporal


def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple):
        return output[0]
    return output.sample  # diffusers *Output dataclasses


def _replace_first_tensor(output: Any, tensor: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return tensor
    if isinstance(output, tuple):
        return (tensor, *output[1:])
    output.sample = tensor
    return output


class TemporalAdapter(nn.Module):
    """Runs a temporal layer on the output of a spatial module, as its forward hook.

    ``self_checkpoint=False`` for layers whose host already runs under diffusers'
    gradient checkpointing (ResNet blocks), so they are not checkpointed twice.
    """

    def __init__(
        self,
        layer: nn.Module,
        frames: FrameContextSlot,
        blend: AlphaBlend | None = None,
        self_checkpoint: bool = True,
    ) -> None:
        super().__init__()
        self.layer = layer
        self.blend = blend
        self.frames = frames
        self.self_checkpoint = self_checkpoint
        self.gradient_checkpointing = False  # toggled by ModelMixin.enable_gradient_checkpointing

    def video_forward(self, video: torch.Tensor) -> torch.Tensor:
        temporal = self.layer(video)
        return temporal if self.blend is None else self.blend(video, temporal)

    def forward(self, folded: torch.Tensor) -> torch.Tensor:
        context = self.frames.get()
        videos = rearrange(folded, "(b f) c h w -> b c f h w", f=context.num_frames)
        run = self.video_forward
        if self.gradient_checkpointing and self.self_checkpoint and torch.is_grad_enabled():
            run = self._checkpointed
        if context.video_rows is None:
            videos = run(videos)
        elif context.video_rows.any():
            # Image rows are copied through untouched (LaVie joint image-video training).
            videos = videos.clone()
            videos[context.video_rows] = run(videos[context.video_rows])
        return rearrange(videos, "b c f h w -> (b f) c h w")

    def _checkpointed(self, video: torch.Tensor) -> torch.Tensor:
        return self._gradient_checkpointing_func(self.video_forward, video)

    def hook(self, module: nn.Module, args: tuple, output: Any) -> Any:
        return _replace_first_tensor(output, self(_first_tensor(output)))
