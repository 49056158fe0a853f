"""Temporal layers that inflate a 2D diffusion UNet into a video UNet.

Spatial layers see frames folded into the batch, ``(b f) c h w``. Every temporal
layer here takes and returns a video ``b c f h w``; :class:`TemporalAdapter`
does the folding, runs the layer as a forward hook on a spatial module, and skips
image rows of joint image-video batches.
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=64)
def _frame_angles(num_frames: int, dim: int, device: torch.device) -> torch.Tensor:
    """(f, dim // 2) angles ``frame * 10000^(-i / (dim // 2))`` shared by both encodings.

    Cached: every temporal layer of a forward pass asks for the same few tables. Built
    outside inference mode so a table first made while sampling can later be saved for
    backward in training.
    """
    half = dim // 2
    with torch.inference_mode(False), torch.no_grad():
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / half)
        return torch.arange(num_frames, device=device, dtype=torch.float32)[:, None] * freqs[None]


@functools.lru_cache(maxsize=64)
def sinusoidal_positions(num_frames: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(f, dim) transformer-style sine/cosine encoding of frame indices (cached, read-only)."""
    angles = _frame_angles(num_frames, dim, device)
    with torch.inference_mode(False), torch.no_grad():
        encoding = torch.cat([angles.sin(), angles.cos()], dim=-1)
        return F.pad(encoding, (0, dim % 2)).to(dtype)


@functools.lru_cache(maxsize=64)
def rotary_tables(
    num_frames: int, head_dim: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(f, head_dim) cos and sign-folded sin tables of :func:`apply_rotary` (cached, read-only)."""
    angles = _frame_angles(num_frames, head_dim, device)
    with torch.inference_mode(False), torch.no_grad():
        cos = angles.cos().repeat(1, 2).to(dtype)
        sin = torch.cat([-angles.sin(), angles.sin()], dim=-1).to(dtype)
        return cos, sin


def apply_rotary(x: torch.Tensor, frame_dim: int = -2) -> torch.Tensor:
    """Rotary position embedding over the frame axis of ``x`` (last axis: an even head dim).

    Pairs channel i with i + d/2: ``x * cos + [-x2, x1] * sin``, written with one roll and
    the sign folded into the cached sin table.
    """
    frame_dim %= x.ndim
    num_frames, head_dim = x.shape[frame_dim], x.shape[-1]
    if head_dim % 2:
        raise ValueError(f"rotary embedding needs an even head dim, got {head_dim}")
    cos, sin = rotary_tables(num_frames, head_dim, x.device, x.dtype)
    # Tables are (f, d): singleton axes between frames and channels make them broadcast.
    between = (1,) * (x.ndim - frame_dim - 2)
    cos, sin = cos.view(num_frames, *between, head_dim), sin.view(num_frames, *between, head_dim)
    return torch.addcmul(x * cos, x.roll(head_dim // 2, dims=-1), sin)


def temporal_conv(video: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Same-padded convolution over the frame axis of ``video`` (b c f h w) with a
    (c_out, c_in, k) kernel, at every pixel.

    Run as a (k, 1) Conv2d on ``b c f (h w)``: on CPU a Conv1d over ``(b h w) c f`` rows
    ran ~1.5x slower and a (k, 1, 1) Conv3d 2-5x slower.
    """
    height = video.shape[-2]
    series = rearrange(video, "b c f h w -> b c f (h w)")
    out = F.conv2d(series, rearrange(weight, "o i k -> o i k 1"), bias, padding=(weight.shape[-1] // 2, 0))
    return rearrange(out, "b c f (h w) -> b c f h w", h=height)


class TemporalConv1d(nn.Module):
    """Make-A-Video pseudo-3D conv: a Conv1d over frames, initialised to identity."""

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        nn.init.dirac_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return temporal_conv(video, self.conv.weight, self.conv.bias)


class FrameConv3d(nn.Conv3d):
    """A same-padded, stride-1 Conv3d over ``b c f h w``; purely temporal (k, 1, 1) kernels
    take :func:`temporal_conv` (same weights, so checkpoints load either way)."""

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if self.kernel_size[1:] != (1, 1):
            return super().forward(video)
        return temporal_conv(video, rearrange(self.weight, "o i k 1 1 -> o i k"), self.bias)


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
        if positions == "rope" and (channels // num_heads) % 2:
            raise ValueError(f"rotary positions need an even head dim, got {channels // num_heads}")
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
        qkv = rearrange(self.to_qkv(hidden), "n f (three heads d) -> n f three heads d", three=3, heads=self.num_heads)
        # split (not slicing): its backward concatenates instead of zero-filling and adding
        query_key, value = qkv.split((2, 1), dim=2)
        if self.positions == "rope":  # query and key rotated in one pass
            query_key = apply_rotary(query_key, frame_dim=1)
        query, key = rearrange(query_key, "n f two heads d -> two n heads f d")
        value = rearrange(value, "n f 1 heads d -> n heads f d")
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
            FrameConv3d(channels, channels, kernel, padding=padding),
            nn.GroupNorm(norm_groups, channels),
            nn.SiLU(),
            FrameConv3d(channels, channels, kernel, padding=padding),
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
        # One fused kernel; at alpha = 1 lerp returns ``spatial`` exactly (it computes
        # end - (end - start) * (1 - weight) for weights >= 0.5).
        return torch.lerp(temporal.to(spatial.dtype), spatial, self.alpha.to(spatial.dtype))


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
