"""Temporal VAE decoder and its 3D patch discriminator, on a tiny AutoencoderKL."""

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from einops import rearrange

from modeling.discriminator import (
    PatchDiscriminator3D,
    decoder_finetune_loss,
    discriminator_hinge_loss,
)
from modeling.temporal_vae import TemporalVAE, decode_video
from tiny_vae import tiny_vae


@pytest.fixture(scope="module")
def vae() -> AutoencoderKL:
    return tiny_vae()


def trained_temporal_vae(vae: AutoencoderKL) -> TemporalVAE:
    """Temporal convs moved off their zero init, as after some fine-tuning."""
    model = TemporalVAE.from_vae(vae, norm_groups=4)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.temporal_parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def per_frame_decode(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    frames = rearrange(latents, "b c f h w -> (b f) c h w") / vae.config.scaling_factor
    return rearrange(vae.decode(frames).sample, "(b f) c h w -> b c f h w", f=latents.shape[2])


@torch.no_grad()
@pytest.mark.parametrize("num_frames", [1, 5])
def test_fresh_temporal_vae_decodes_like_the_2d_vae_per_frame(vae, num_frames):
    model = TemporalVAE.from_vae(vae, norm_groups=4)
    latents = torch.randn(2, 4, num_frames, 4, 4)
    video = model.decode(latents)
    assert video.shape == (2, 3, num_frames, 8, 8)
    assert (video - per_frame_decode(vae, latents)).abs().max() < 1e-5
    assert (decode_video(vae, latents) - video).abs().max() < 1e-5


@torch.no_grad()
def test_trained_temporal_convs_mix_frames_and_flat_layout_matches(vae):
    model = trained_temporal_vae(vae)
    latents = torch.randn(2, 4, 3, 4, 4)
    video = model.decode(latents)
    assert (video - per_frame_decode(vae, latents)).abs().max() > 1e-3
    flat = model.decode(rearrange(latents, "b c f h w -> (b f) c h w"), num_frames=3)
    assert torch.equal(rearrange(flat, "(b f) c h w -> b c f h w", f=3), video)
    # Changing one frame's latent now changes its neighbours' pixels too.
    edited = latents.clone()
    edited[:, :, 0] += 1.0
    assert (model.decode(edited)[:, :, 1] - video[:, :, 1]).abs().max() > 1e-4


def test_only_temporal_convs_get_gradients(vae):
    model = TemporalVAE.from_vae(vae, norm_groups=4).train()
    video = torch.rand(1, 3, 3, 16, 16) * 2 - 1
    latents = model.encode(video)
    assert latents.shape == (1, 4, 3, 8, 8)
    model.decode(latents).square().mean().backward()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("temporal_convs.") for name in trainable)
    assert all(p.grad is None for name, p in model.named_parameters() if name not in trainable)
    assert model.temporal_convs[-1].conv2.weight.grad.abs().sum() > 0


@torch.no_grad()
def test_save_load_round_trip_is_bit_exact(vae, tmp_path: Path):
    model = trained_temporal_vae(vae)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = TemporalVAE.from_pretrained(tmp_path, use_safetensors=True)
    latents = torch.randn(1, 4, 4, 4, 4)
    assert torch.equal(loaded.decode(latents), model.decode(latents))
    assert all(not p.requires_grad for p in loaded.vae.parameters())


@torch.no_grad()
def test_stock_2d_vae_weights_load_by_their_own_names(vae):
    model = TemporalVAE.from_vae(tiny_vae(), norm_groups=4)
    missing, unexpected = model.vae.load_state_dict(vae.state_dict())
    assert not missing and not unexpected


def test_discriminator_and_decoder_loss_train_the_right_parts(vae):
    torch.manual_seed(0)
    model = TemporalVAE.from_vae(vae, norm_groups=4).train()
    discriminator = PatchDiscriminator3D(base_channels=8, num_layers=2, norm_groups=4)
    video = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    decoded = model.decode(model.encode(video))
    logits = discriminator(video)
    assert logits.ndim == 5 and logits.shape[:2] == (2, 1) and logits.shape[2] >= 1

    losses = decoder_finetune_loss(decoded, video, discriminator, model.temporal_convs[-1].conv2.weight)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and losses["reconstruction"] > 0
    assert model.temporal_convs[-1].conv2.weight.grad.abs().sum() > 0

    discriminator.zero_grad()
    d_loss = discriminator_hinge_loss(discriminator(video), discriminator(decoded.detach()))
    d_loss.backward()
    assert d_loss > 0 and discriminator.layers[0].weight.grad.abs().sum() > 0
    # A perfect critic (real >= 1, fake <= -1) has zero hinge loss.
    assert discriminator_hinge_loss(torch.full((3,), 2.0), torch.full((3,), -2.0)) == 0
