"""Inflation invariants: right after inflation the video UNet equals the 2D UNet per frame."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange, repeat

import modeling
from modeling.inflation import VARIANTS
from modeling.temporal_layers import AlphaBlend, TemporalAttention, TemporalConv1d, TemporalConvBlock


def per_frame_2d(unet2d, sample, timesteps, text):
    """Reference: the 2D UNet on every frame independently."""
    num_frames = sample.shape[2]
    frames = rearrange(sample, "b c f h w -> (b f) c h w")
    out = unet2d(
        frames, repeat(timesteps, "b -> (b f)", f=num_frames), repeat(text, "b l d -> (b f) l d", f=num_frames)
    ).sample
    return rearrange(out, "(b f) c h w -> b c f h w", f=num_frames)


@pytest.mark.parametrize("variant", VARIANTS)
def test_inflated_equals_2d_per_frame(tiny_unet2d, variant):
    video_unet = modeling.inflate(tiny_unet2d, variant, head_dim=8).eval()
    torch.manual_seed(0)
    text = torch.randn(2, 7, 32)
    timesteps = torch.tensor([3, 700])
    with torch.no_grad():
        for num_frames in (1, 3, 5):
            sample = torch.randn(2, 4, num_frames, 16, 16)
            out = video_unet(sample, timesteps, text, fps=torch.tensor([4.0, 24.0])).sample
            assert out.shape == sample.shape
            diff = (out - per_frame_2d(tiny_unet2d, sample, timesteps, text)).abs().max()
            assert diff < 1e-5, f"{variant} F={num_frames}: {diff}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_temporal_layers_do_mix_frames_once_trained(tiny_unet2d, variant):
    """The invariant must come from the initialisation, not from layers that ignore time."""
    video_unet = modeling.inflate(tiny_unet2d, variant, head_dim=8).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in modeling.temporal_parameters(video_unet):
            p.add_(0.2 * torch.randn_like(p))
            if name.endswith("alpha_raw"):
                p.fill_(0.5)
        sample = torch.randn(1, 4, 3, 16, 16)
        text = torch.randn(1, 7, 32)
        out = video_unet(sample, 10, text).sample
        changed_last = sample.clone()
        changed_last[:, :, -1] += 1.0
        out_changed = video_unet(changed_last, 10, text).sample
    # Frame 0 only changes if information flows across frames.
    assert (out_changed[:, :, 0] - out[:, :, 0]).abs().max() > 1e-4


def test_variant_layers(tiny_unet2d):
    kinds = {
        variant: {type(m) for m in modeling.inflate(tiny_unet2d, variant, head_dim=8).temporal_layers.modules()}
        for variant in VARIANTS
    }
    assert {TemporalConv1d, TemporalAttention} <= kinds["make_a_video"]
    assert {TemporalConvBlock, TemporalAttention, AlphaBlend} <= kinds["videoldm"]
    assert TemporalAttention in kinds["lavie"] and TemporalConv1d not in kinds["lavie"]
    lavie = modeling.inflate(tiny_unet2d, "lavie", head_dim=8)
    assert {m.positions for m in lavie.modules() if isinstance(m, TemporalAttention)} == {"rope"}


def test_inflation_leaves_2d_unet_untouched(tiny_unet2d):
    before = {k: v.clone() for k, v in tiny_unet2d.state_dict().items()}
    modeling.inflate(tiny_unet2d, "videoldm", head_dim=8)
    assert all(not m._forward_hooks for m in tiny_unet2d.modules())
    assert all(torch.equal(before[k], v) for k, v in tiny_unet2d.state_dict().items())


def test_videoldm_alpha_starts_all_spatial_and_learns(tiny_unet2d):
    video_unet = modeling.inflate(tiny_unet2d, "videoldm", head_dim=8)
    blends = [m for m in video_unet.modules() if isinstance(m, AlphaBlend)]
    assert blends and all(b.alpha.item() == 1.0 for b in blends)
    torch.manual_seed(0)
    out = video_unet(torch.randn(1, 4, 3, 16, 16), 10, torch.randn(1, 7, 32)).sample
    out.square().mean().backward()
    assert any(b.alpha_raw.grad.abs() > 0 for b in blends)


def test_unknown_variant_is_rejected(tiny_unet2d):
    with pytest.raises(ValueError, match="unknown variant"):
        modeling.inflate(tiny_unet2d, "sora")
