"""Masked-frame models (Make-A-Video F-up, VideoLDM prediction/interpolation).

The model sees ``conditioning = (context latents * mask, mask)`` concatenated to the
noisy latents on channels: mask is 1 on known (context) frames, 0 on frames to make.
Frame masks are bool tensors (f,) or (b, f).
"""

from __future__ import annotations

from typing import Literal

import torch
from einops import rearrange

from modeling.video_unet import VideoUNet


def add_mask_channels(model: VideoUNet) -> VideoUNet:
    """Widen conv_in for masked latents (c) + 1 mask channel, zero-initialised, in place.

    Train the new channels with ``apply_freeze_policy(..., also_train=("unet.conv_in",))``.
    """
    model.widen_input(model.out_channels + 1)
    return model


def interpolation_mask(num_context: int, skip: int, include_tail: bool = False) -> torch.Tensor:
    """Context frames every ``skip``-th frame: 16 frames, skip 5 -> (16-1)*5+1 = 76 frames.

    ``include_tail`` appends ``skip - 1`` frames to extrapolate after the last context
    frame, giving exactly ``skip * num_context`` frames (VideoLDM's T -> 4T with skip 4).
    """
    num_frames = (num_context - 1) * skip + 1 + (skip - 1 if include_tail else 0)
    mask = torch.zeros(num_frames, dtype=torch.bool)
    mask[: (num_context - 1) * skip + 1 : skip] = True
    return mask


def extrapolation_mask(num_frames: int, num_context: int, where: Literal["first", "last"] = "first") -> torch.Tensor:
    """Known frames at the start (predict what follows; 1 frame = image animation) or at
    the end (predict what came before)."""
    if not 0 <= num_context <= num_frames:
        raise ValueError(f"num_context {num_context} outside 0..{num_frames}")
    mask = torch.zeros(num_frames, dtype=torch.bool)
    if where == "first":
        mask[:num_context] = True
    elif where == "last":
        mask[num_frames - num_context :] = True
    else:
        raise ValueError(f"where must be 'first' or 'last', got {where!r}")
    return mask


def prediction_mask(num_frames: int, num_context: int) -> torch.Tensor:
    """VideoLDM prediction model: 0, 1 or 2 leading context frames."""
    if num_context not in (0, 1, 2):
        raise ValueError(f"prediction uses 0, 1 or 2 context frames, got {num_context}")
    return extrapolation_mask(num_frames, num_context, "first")


def place_context(context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scatter known frames ``(b, c, n, h, w)`` into a zero video at the mask's True
    positions (mask (f,) with n True entries) -> (b, c, f, h, w)."""
    batch, channels, _, height, width = context.shape
    video = context.new_zeros(batch, channels, mask.numel(), height, width)
    video[:, :, mask.to(context.device)] = context
    return video


def drop_context(
    context: torch.Tensor, mask: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier-free dropout of the context: each sample, with probability ``p``, loses
    all its context frames (latents zeroed, mask all 0). Returns (context, mask (b, f))."""
    batch = context.shape[0]
    frame_mask = mask.to(context.device).bool().expand(batch, context.shape[2])
    keep = torch.rand(batch, generator=generator, device=generator.device if generator else "cpu") >= p
    frame_mask = frame_mask & keep.to(context.device)[:, None]
    weights = rearrange(frame_mask.to(context.dtype), "b f -> b 1 f 1 1")
    return context * weights, frame_mask


def masked_conditioning(latents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``conditioning`` for VideoUNet.forward: (latents * mask, mask) -> (b, c + 1, f, h, w)."""
    batch, _, num_frames, height, width = latents.shape
    frame_mask = mask.to(latents.device).expand(batch, num_frames)
    weights = rearrange(frame_mask.to(latents.dtype), "b f -> b 1 f 1 1")
    return torch.cat([latents * weights, weights.expand(batch, 1, num_frames, height, width)], dim=1)
