"""Masked-frame interpolation / extrapolation / prediction models."""

from __future__ import annotations

import pytest
import torch

import modeling
from modeling.masked_frames import (
    add_mask_channels,
    drop_context,
    extrapolation_mask,
    interpolation_mask,
    masked_conditioning,
    place_context,
    prediction_mask,
)
from modeling.video_unet import VideoUNet


def test_interpolation_mask_16_to_76_with_skip_5():
    mask = interpolation_mask(16, 5)
    assert mask.numel() == 76 and mask.sum() == 16
    assert torch.equal(mask.nonzero().flatten(), torch.arange(0, 76, 5))


def test_interpolation_mask_t_to_4t():
    mask = interpolation_mask(16, 4, include_tail=True)
    assert mask.numel() == 64 and mask.sum() == 16 and mask[0] and mask[60] and not mask[61:].any()


def test_extrapolation_and_prediction_masks():
    assert extrapolation_mask(5, 1, "first").tolist() == [True, False, False, False, False]  # image animation
    assert extrapolation_mask(5, 2, "last").tolist() == [False, False, False, True, True]
    assert [int(prediction_mask(4, n).sum()) for n in (0, 1, 2)] == [0, 1, 2]
    with pytest.raises(ValueError):
        prediction_mask(4, 3)


def test_place_context_and_conditioning():
    mask = interpolation_mask(3, 2)  # frames 0, 2, 4 known
    context = torch.arange(1.0, 4.0).view(1, 1, 3, 1, 1).expand(2, 4, 3, 2, 2)
    video = place_context(context, mask)
    assert video[0, 0, :, 0, 0].tolist() == [1.0, 0.0, 2.0, 0.0, 3.0]
    cond = masked_conditioning(video, mask)
    assert cond.shape == (2, 5, 5, 2, 2)
    assert cond[0, 4, :, 0, 0].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]


def test_drop_context_is_per_sample_and_seeded():
    context, mask = torch.ones(64, 4, 3, 2, 2), prediction_mask(3, 2)
    dropped, frame_mask = drop_context(context, mask, p=0.5, generator=torch.Generator().manual_seed(0))
    again, _ = drop_context(context, mask, p=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(dropped, again)
    kept = frame_mask.any(dim=1)
    assert 0 < kept.sum() < 64
    assert torch.equal(dropped[~kept], torch.zeros_like(dropped[~kept]))
    assert torch.equal(frame_mask[kept], mask.expand(int(kept.sum()), 3))
    assert drop_context(context, mask, p=0.0)[1].all(dim=0).tolist() == mask.tolist()


def test_widened_model_equals_unwidened_at_init(tiny_video_unet, tmp_path):
    torch.manual_seed(0)
    sample, text = torch.randn(2, 4, 5, 16, 16), torch.randn(2, 7, 32)
    with torch.no_grad():
        before = tiny_video_unet(sample, 30, text).sample
    add_mask_channels(tiny_video_unet)
    assert tiny_video_unet.in_channels == 9 and tiny_video_unet.out_channels == 4
    latents = torch.randn(2, 4, 5, 16, 16)
    cond = masked_conditioning(latents, extrapolation_mask(5, 1))
    with torch.no_grad():
        after = tiny_video_unet(sample, 30, text, conditioning=cond).sample
    assert (after - before).abs().max() < 1e-5
    # the new channels learn once trained, and the widened architecture survives save/load
    modeling.apply_freeze_policy(tiny_video_unet, "spatial_frozen", also_train=("unet.conv_in",))
    tiny_video_unet(sample, 30, text, conditioning=cond).sample.square().mean().backward()
    assert tiny_video_unet.unet.conv_in.weight.grad[:, 4:].abs().sum() > 0
    tiny_video_unet.save_pretrained(tmp_path)
    loaded = VideoUNet.from_pretrained(tmp_path).eval()
    assert loaded.in_channels == 9
    with torch.no_grad():
        assert torch.equal(loaded(sample, 30, text, conditioning=cond).sample, after)
