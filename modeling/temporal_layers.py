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
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from diffusers.models.attention_processor import Attention
from torch import nn

PositionEncoding = Literal["none", "sinusoidal", "rope"]


@dataclass(frozen=True)
class FrameContext:
    """What the temporal layers need to know about the batch being run."""

    num_frames: int
    video_rows: torch.Tensor | None = None  # bool (b,); None means every row is a video
    fps: torch.Tensor | None = None  # (b,)
    text: torch.Tensor | None = None  # (b, tokens, d): each clip's encoder_hidden_states


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
def rotary_table(num_frames: int, rotary_dim: int, device: torch.device) -> torch.Tensor:
    """(f, rotary_dim // 2) complex ``exp(i * angle)`` of :func:`apply_rotary` (cached, read-only)."""
    angles = _frame_angles(num_frames, rotary_dim, device)
    with torch.inference_mode(False), torch.no_grad():
        return torch.polar(torch.ones_like(angles), angles)


def apply_rotary(x: torch.Tensor, frame_dim: int = -2, rotary_dim: int | None = None) -> torch.Tensor:
    """Rotary position embedding over the frame axis of ``x``, on the first ``rotary_dim``
    channels of its last axis (None: all), the others passed through.

    rotary-embedding-torch's conventions (LaVie uses them): theta 10000, position = frame
    index, interleaved pairs (x_2i, x_2i+1) rotated by ``frame * 10000^(-2i / rotary_dim)``.
    Each pair is one complex number turned by one complex product, in float32 (half as many
    passes over memory as cos/sin tables with a pair swap; bf16 inputs turn in float32 too).
    """
    frame_dim %= x.ndim
    num_frames = x.shape[frame_dim]
    rotary_dim = x.shape[-1] if rotary_dim is None else rotary_dim
    if rotary_dim % 2 or rotary_dim > x.shape[-1]:
        raise ValueError(f"rotary embedding needs an even rotary dim <= head dim {x.shape[-1]}, got {rotary_dim}")
    rotated, passed = x[..., :rotary_dim], x[..., rotary_dim:]
    # The table is (f, d / 2): singleton axes between frames and channels make it broadcast.
    between = (1,) * (x.ndim - frame_dim - 2)
    turns = rotary_table(num_frames, rotary_dim, x.device).view(num_frames, *between, rotary_dim // 2)
    pairs = rearrange(rotated.float(), "... (d two) -> ... d two", two=2)
    if any(stride % 2 for stride in pairs.stride()[:-1]) or pairs.storage_offset() % 2:
        pairs = pairs.contiguous()  # a complex view needs even strides (slices of qkv have them)
    pairs = torch.view_as_complex(pairs)
    out = rearrange(torch.view_as_real(pairs * turns), "... d two -> ... (d two)").to(x.dtype)
    return out if passed.shape[-1] == 0 else torch.cat([out, passed], dim=-1)


@functools.lru_cache(maxsize=64)
def relative_position_buckets(num_frames: int, num_buckets: int, max_distance: int, device: torch.device) -> torch.Tensor:
    """(f, f) T5-style buckets of ``query frame - key frame``: one half of the buckets per
    sign, exact below a quarter of ``num_buckets``, log-spaced up to ``max_distance``."""
    with torch.inference_mode(False), torch.no_grad():
        frames = torch.arange(num_frames, device=device)
        offset = frames[:, None] - frames[None, :]
        half = num_buckets // 2
        exact = half // 2
        distance = offset.abs()
        log_spaced = exact + (
            torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (half - exact)
        ).long()
        far = torch.where(distance < exact, distance, log_spaced.clamp(max=half - 1))
        return far + half * (offset < 0).long()


class RelativePositionBias(nn.Module):
    """Learned per-head attention bias of the frame offset (LaVie's temporal attention)."""

    def __init__(self, num_heads: int, num_buckets: int = 32, max_distance: int = 32) -> None:
        super().__init__()
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)

    def forward(self, num_frames: int, device: torch.device) -> torch.Tensor:
        buckets = relative_position_buckets(num_frames, self.num_buckets, self.max_distance, device)
        return rearrange(self.relative_attention_bias(buckets), "i j heads -> heads i j")


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


def attention_with_bias(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v for ``(n heads) f d`` inputs and a learned (heads, f, f) bias.

    SDPA cannot run its fused kernels on a mask that needs a gradient and falls back to its
    math path; one fused ``baddbmm`` per layer does the same work about 20 % faster on CPU.
    The product with v runs transposed, ``(v^T p^T)^T``: CPU batched gemm is 2-3x slower when
    the row-major result has only d columns (f x d at head dim 4, d x f is fast), and so are
    the gradients of v and p that autograd derives from it.
    """
    heads, dim = bias.shape[0], query.shape[-1]
    scores = torch.baddbmm(
        bias.to(query.dtype).repeat(query.shape[0] // heads, 1, 1),
        query,
        rearrange(key, "m f d -> m d f"),
        alpha=dim**-0.5,
    )
    probs = rearrange(scores.softmax(dim=-1), "m i j -> m j i")
    return rearrange(torch.bmm(rearrange(value, "m f d -> m d f"), probs), "m d f -> m f d")


class TemporalAttention(nn.Module):
    """Self-attention across frames at every pixel (``b c f h w -> b f (h w) c``), residual.

    ``zero_init=True`` zeroes the output projections so the layer starts as identity.
    ``positions="rope"`` rotates queries and keys (:func:`apply_rotary`, the first
    ``rotary_dim`` channels of each head, None: all); ``relative_bias`` adds a learned
    T5-style bias of the frame offset to the scores (LaVie). ``context_dim`` adds, after the
    self-attention, a cross-attention of every token to its clip's text (VideoLDM's temporal
    block as its authors' ``sgm`` builds it), with its own zeroed output projection.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        positions: PositionEncoding = "none",
        zero_init: bool = True,
        ff_mult: int = 0,
        rotary_dim: int | None = None,
        relative_bias: bool = False,
        context_dim: int | None = None,
    ) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
        head_dim = channels // num_heads
        self.rotary_dim = None if rotary_dim is None else min(rotary_dim, head_dim)
        if positions == "rope" and (self.rotary_dim or head_dim) % 2:
            raise ValueError(f"rotary positions need an even head dim, got {self.rotary_dim or head_dim}")
        self.num_heads = num_heads
        self.positions = positions
        self.relative_bias = RelativePositionBias(num_heads) if relative_bias else None
        self.norm = nn.LayerNorm(channels)
        self.to_qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.to_out = nn.Linear(channels, channels)
        self.text_norm = nn.LayerNorm(channels) if context_dim else None
        self.text_attention = (
            Attention(channels, cross_attention_dim=context_dim, heads=num_heads, dim_head=head_dim, out_bias=True)
            if context_dim
            else None
        )
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
            outputs += [self.text_attention.to_out[0]] if self.text_attention is not None else []
            for linear in outputs:
                nn.init.zeros_(linear.weight)
                nn.init.zeros_(linear.bias)

    def attend(self, tokens: torch.Tensor) -> torch.Tensor:
        """``attn(norm(tokens))`` across frames for ``b f n c`` tokens, any strides.

        The per-token layers (norm, projections) run in the caller's layout; q, k and v are
        rearranged once into contiguous frame sequences for the attention, its output once
        back to ``b f n c``: no copy of the tokens themselves.
        """
        hidden = self.norm(tokens)
        if self.positions == "sinusoidal":
            positions = sinusoidal_positions(hidden.shape[1], hidden.shape[-1], hidden.device, hidden.dtype)
            hidden = hidden + rearrange(positions, "f c -> f 1 c")
        heads, channels = self.num_heads, tokens.shape[-1]
        # split (not slicing): its backward concatenates the gradients straight into the
        # projection's layout. Then one copy each makes every (pixel, head) frame sequence
        # contiguous, as bmm needs; v's own copy lets the q, k copy go once they are rotated.
        query_key, value = self.to_qkv(hidden).split((2 * channels, channels), dim=-1)
        query_key = rearrange(query_key, "b f n (two heads d) -> two (b n heads) f d", two=2, heads=heads)
        value = rearrange(value, "b f n (heads d) -> (b n heads) f d", heads=heads)
        if self.positions == "rope":  # query and key rotated in one pass
            query_key = apply_rotary(query_key, rotary_dim=self.rotary_dim)
        query, key = query_key
        if self.relative_bias is None:
            attended = F.scaled_dot_product_attention(
                *(rearrange(x, "(s heads) f d -> s heads f d", heads=heads) for x in (query, key, value))
            )
        else:
            bias = self.relative_bias(tokens.shape[1], tokens.device)
            attended = rearrange(attention_with_bias(query, key, value, bias), "(s heads) f d -> s heads f d", heads=heads)
        return self.to_out(rearrange(attended, "(b n) heads f d -> b f n (heads d)", b=tokens.shape[0]))

    def forward(self, video: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """``text`` (b, tokens, d): the clips' encoder_hidden_states, read by the text cross-attention."""
        height, num_frames = video.shape[-2], video.shape[2]
        tokens = rearrange(video, "b c f h w -> b f (h w) c")
        tokens = tokens + self.attend(tokens)
        if self.text_attention is not None:
            if text is None:
                raise ValueError("this temporal attention cross-attends to the text: no encoder_hidden_states given")
            queries = rearrange(self.text_norm(tokens), "b f n c -> b (f n) c")
            attended = self.text_attention(queries, encoder_hidden_states=text.to(queries.dtype))
            tokens = tokens + rearrange(attended, "b (f n) c -> b f n c", f=num_frames)
        if self.ff is not None:
            tokens = tokens + self.ff(tokens)
        return rearrange(tokens, "b f (h w) c -> b c f h w", h=height)


class TemporalConvBlock(nn.Module):
    """VideoLDM temporal residual block: (GroupNorm, SiLU, Conv3d) x 2 plus skip; the
    kernels span ``temporal_kernel`` frames and ``spatial_kernel`` pixels (1: time only).

    The last conv starts at zero, so the block starts as identity: merged with the spatial
    path by :class:`AlphaBlend` the invariant then holds for any alpha.
    """

    def __init__(self, channels: int, norm_groups: int, temporal_kernel: int = 3, spatial_kernel: int = 1) -> None:
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
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return video + self.layers(video)


class AlphaBlend(nn.Module):
    """VideoLDM merge ``alpha * spatial + (1 - alpha) * temporal``, ``alpha = sigmoid(mix_factor)``
    with a learned ``mix_factor`` (diffusers' ``AlphaBlender``, strategy "learned").

    A sigmoid has no dead zone: alpha always gets a gradient and so does the temporal branch
    behind it (a clamp at 1 froze both once alpha drifted above 1). The identity at init comes
    from the temporal branch starting equal to its input, not from alpha; ``mix_factor``
    starts at 0.5 as SVD's merge factor in diffusers.
    """

    def __init__(self, mix_factor: float = 0.5) -> None:
        super().__init__()
        self.mix_factor = nn.Parameter(torch.tensor(mix_factor))

    @property
    def alpha(self) -> torch.Tensor:
        return torch.sigmoid(self.mix_factor)

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        # One fused kernel: temporal + alpha * (spatial - temporal), exactly ``spatial`` when they are equal.
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


def on_video_rows(
    run: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor], videos: torch.Tensor, context: FrameContext
) -> torch.Tensor:
    """``run(videos, text)`` on the video rows of ``videos`` (batch first) and their text;
    image rows are copied through untouched (LaVie joint image-video training)."""
    rows, text = context.video_rows, context.text
    if rows is None:
        return run(videos, text)
    if not rows.any():
        return videos
    videos = videos.clone()
    videos[rows] = run(videos[rows], None if text is None else text[rows])
    return videos


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

    def video_forward(self, video: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        temporal = self.layer(video, text) if isinstance(self.layer, TemporalAttention) else self.layer(video)
        return temporal if self.blend is None else self.blend(video, temporal)

    def forward(self, folded: torch.Tensor) -> torch.Tensor:
        context = self.frames.get()
        videos = rearrange(folded, "(b f) c h w -> b c f h w", f=context.num_frames)
        run = self.video_forward
        if self.gradient_checkpointing and self.self_checkpoint and torch.is_grad_enabled():
            run = self._checkpointed
        return rearrange(on_video_rows(run, videos, context), "b c f h w -> (b f) c h w")

    def _checkpointed(self, video: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        return self._gradient_checkpointing_func(self.video_forward, video, text)

    def hook(self, module: nn.Module, args: tuple, output: Any) -> Any:
        return _replace_first_tensor(output, self(_first_tensor(output)))


class FeedForwardTemporalAdapter(nn.Module):
    """Temporal attention inside a diffusers ``BasicTransformerBlock``, after cross-attention
    and before the feed-forward, as LaVie places it: ``h = h + attn(norm(h))`` on the block's
    residual stream ``(b f) n c``.

    diffusers computes ``h + ff(norm3(h))``; a pre-hook on ``norm3`` hands it
    ``h' = h + delta`` and a hook on ``ff`` adds ``delta`` to its output, which gives
    ``h' + ff(norm3(h'))``. The host block runs under diffusers' own checkpointing.
    """

    def __init__(self, layer: TemporalAttention, frames: FrameContextSlot) -> None:
        super().__init__()
        self.layer = layer
        self.frames = frames
        self._delta: torch.Tensor | None = None

    def attach(self, block: nn.Module) -> None:
        if getattr(block, "_chunk_size", None) is not None:
            raise ValueError("LaVie temporal attention cannot sit in a block with a chunked feed-forward")
        block.norm3.register_forward_pre_hook(self.before_norm)
        block.ff.register_forward_hook(self.after_feed_forward)

    def delta(self, hidden: torch.Tensor) -> torch.Tensor:
        """``attn(norm(h))`` on video rows, zero on image rows."""
        context = self.frames.get()
        videos = rearrange(hidden, "(b f) n c -> b f n c", f=context.num_frames)  # a view: attend takes any strides
        rows = context.video_rows
        if rows is None:
            delta = self.layer.attend(videos)
        else:
            delta = torch.zeros_like(videos)
            selected = videos[rows]
            if selected.shape[0]:
                delta[rows] = self.layer.attend(selected)
        return rearrange(delta, "b f n c -> (b f) n c")

    def before_norm(self, module: nn.Module, args: tuple) -> tuple:
        hidden = args[0]
        self._delta = self.delta(hidden)
        return (hidden + self._delta, *args[1:])

    def after_feed_forward(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        delta, self._delta = self._delta, None  # not kept: it holds activations
        return output + delta
