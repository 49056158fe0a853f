"""Tiny diffusers UNets for modeling tests (shared with the sampler/cascade tests)."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

TINY_UNET_CONFIG = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=8,
    norm_num_groups=8,
)


def make_tiny_unet2d(seed: int = 0, **overrides) -> UNet2DConditionModel:
    """A tiny SD-layout UNet with random (seeded) weights, in eval mode."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(**{**TINY_UNET_CONFIG, **overrides}).eval()


@pytest.fixture
def tiny_unet2d() -> UNet2DConditionModel:
    return make_tiny_unet2d()


@pytest.fixture
def make_unet2d():
    """Factory: ``make_unet2d(seed=0, **config_overrides)`` -> tiny UNet2DConditionModel."""
    return make_tiny_unet2d


@pytest.fixture
def tiny_video_unet(tiny_unet2d):
    """A tiny Make-A-Video-inflated VideoUNet (cross_attention_dim 32, 4 latent channels)."""
    from modeling.inflation import inflate

    return inflate(tiny_unet2d, "make_a_video", head_dim=8).eval()
