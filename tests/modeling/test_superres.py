"""Video super-resolution: noise augmentation, patch-wise inference, per-frame SR."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

import modeling
from modeling.superres import (
    TiledVideoUNet,
    initial_noise,
    noise_augment,
    superres_conditioning,
    tile_starts,
    tiled_apply,
)


def tiny_sr_model(make_unet2d):
    """SD x4 upscaler layout: latents + low-res latents in, noise level as class label."""
    unet2d = make_unet2d(in_channels=8, num_class_embeds=100)
    return modeling.inflate(unet2d, "make_a_video", head_dim=8).eval()


def test_noise_augment_follows_the_schedule():
    scheduler = DDPMScheduler(num_train_timesteps=100)
    low_res = torch.randn(2, 4, 3, 4, 4)
    noisy = noise_augment(low_res, torch.tensor([0, 99]), scheduler, torch.Generator().manual_seed(0))
    noise = torch.randn(low_res.shape, generator=torch.Generator().manual_seed(0))
    alpha_bar = scheduler.alphas_cumprod[torch.tensor([0, 99])].view(2, 1, 1, 1, 1)
    torch.testing.assert_close(noisy, alpha_bar.sqrt() * low_res + (1 - alpha_bar).sqrt() * noise)
    assert (noisy[0] - low_res[0]).abs().mean() < 0.02 < 0.5 < (noisy[1] - low_res[1]).abs().mean()


def test_superres_forward_with_noise_level(make_unet2d):
    model = tiny_sr_model(make_unet2d)
    scheduler = DDPMScheduler(num_train_timesteps=100)
    cond, labels = superres_conditioning(torch.randn(1, 4, 3, 8, 8), (16, 16), 20, scheduler)
    assert cond.shape == (1, 4, 3, 16, 16) and labels.tolist() == [20]
    sample, text = torch.randn(1, 4, 3, 16, 16), torch.randn(1, 7, 32)
    with torch.no_grad():
        low = model(sample, 5, text, conditioning=cond, class_labels=labels).sample
        high = model(sample, 5, text, conditioning=cond, class_labels=torch.tensor([90])).sample
    assert low.shape == sample.shape and (low - high).abs().max() > 1e-4


def test_tile_starts_cover_and_align_to_end():
    assert tile_starts(16, 16, 4) == [0] and tile_starts(10, 16, 4) == [0]
    assert tile_starts(20, 8, 2) == [0, 6, 12]
    assert tile_starts(22, 8, 2) == [0, 6, 12, 14]


def test_tiled_apply_blends_back_a_pointwise_function():
    plane = torch.randn(2, 3, 22, 19)
    out = tiled_apply(lambda rows, cols: plane[..., rows, cols] * 2 + 1, 22, 19, tile=8, overlap=3)
    torch.testing.assert_close(out, plane * 2 + 1)


def test_patchwise_equals_whole_frame_when_tile_covers(make_unet2d):
    model = tiny_sr_model(make_unet2d)
    torch.manual_seed(0)
    sample, cond, text = torch.randn(1, 4, 2, 16, 16), torch.randn(1, 4, 2, 16, 16), torch.randn(1, 7, 32)
    with torch.no_grad():
        whole = model(sample, 5, text, conditioning=cond, class_labels=torch.tensor([3])).sample
        tiled = TiledVideoUNet(model, tile_size=16)(sample, 5, text, conditioning=cond, class_labels=torch.tensor([3]))
    assert torch.equal(tiled.sample, whole)


def test_patchwise_shapes_for_non_multiple_sizes(make_unet2d):
    tiled = TiledVideoUNet(tiny_sr_model(make_unet2d), tile_size=8, tile_overlap=2)
    sample = torch.randn(1, 4, 2, 18, 22)
    with torch.no_grad():
        out = tiled(sample, 5, torch.randn(1, 7, 32), conditioning=torch.randn_like(sample), class_labels=torch.tensor([3]))
    assert out.sample.shape == (1, 4, 2, 18, 22) and torch.isfinite(out.sample).all()


def test_per_frame_sr_shares_noise_and_skips_temporal_layers(make_unet2d):
    noise = initial_noise((1, 4, 3, 16, 16), torch.Generator().manual_seed(0), same_on_every_frame=True)
    assert torch.equal(noise[:, :, 0], noise[:, :, 2])
    model = tiny_sr_model(make_unet2d)
    with torch.no_grad():
        for _, p in modeling.temporal_parameters(model):
            p.add_(0.3 * torch.randn_like(p))
    per_frame = TiledVideoUNet(model, tile_size=16, per_frame=True)
    cond, text = torch.randn(1, 4, 3, 16, 16), torch.randn(1, 7, 32)
    with torch.no_grad():
        out = per_frame(noise, 5, text, conditioning=cond, class_labels=torch.tensor([3])).sample
        first_alone = per_frame(noise[:, :, :1], 5, text, conditioning=cond[:, :, :1], class_labels=torch.tensor([3])).sample
    torch.testing.assert_close(out[:, :, :1], first_alone, atol=1e-5, rtol=0)
