"""VideoUNet forward contract, joint image-video rows, conditioning, save/load, spatial swap."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange, repeat

import modeling
from modeling.inflation import VARIANTS
from modeling.video_unet import VideoUNet


def perturb_temporal(video_unet, seed: int = 0) -> None:
    """Move every added layer away from its identity init, as training would."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in modeling.temporal_parameters(video_unet):
            p.add_(0.2 * torch.randn_like(p))
            if name.endswith("mix_factor"):
                p.fill_(0.0)


def test_forward_contract(tiny_video_unet):
    torch.manual_seed(0)
    sample, text = torch.randn(2, 4, 5, 16, 16), torch.randn(2, 7, 32)
    with torch.no_grad():
        as_dict = tiny_video_unet(sample, 5, text).sample
        as_tuple = tiny_video_unet(sample, torch.tensor(5), text, return_dict=False)[0]
        per_row = tiny_video_unet(sample, torch.tensor([5, 5]), text).sample
    assert as_dict.shape == (2, 4, 5, 16, 16)
    assert torch.equal(as_dict, as_tuple) and torch.equal(as_dict, per_row)
    assert tiny_video_unet.in_channels == 4 and tiny_video_unet.out_channels == 4
    assert tiny_video_unet.config.cross_attention_dim == 32 and tiny_video_unet.sample_size == 16


@pytest.mark.parametrize("variant", VARIANTS)
def test_image_rows_bit_identical_to_2d(tiny_unet2d, variant):
    video_unet = modeling.inflate(tiny_unet2d, variant, head_dim=8).eval()
    perturb_temporal(video_unet)
    torch.manual_seed(1)
    sample, text = torch.randn(3, 4, 3, 16, 16), torch.randn(3, 7, 32)
    timesteps, is_image = torch.tensor([20, 400, 900]), torch.tensor([False, True, False])
    with torch.no_grad():
        out = video_unet(sample, timesteps, text, fps=torch.tensor([8.0, 8.0, 30.0]), is_image=is_image).sample
        # The 2D UNet on the same folded batch (same kernels, so bit-comparable).
        ref = tiny_unet2d(
            rearrange(sample, "b c f h w -> (b f) c h w"),
            repeat(timesteps, "b -> (b f)", f=3),
            repeat(text, "b l d -> (b f) l d", f=3),
        ).sample
    ref = rearrange(ref, "(b f) c h w -> b c f h w", f=3)
    assert torch.equal(out[1], ref[1])
    assert (out[0] - ref[0]).abs().max() > 1e-4  # video rows do go through temporal layers


def test_fps_embedding_zero_at_init_then_effective(tiny_video_unet):
    torch.manual_seed(0)
    sample, text = torch.randn(1, 4, 3, 16, 16), torch.randn(1, 7, 32)
    with torch.no_grad():
        plain = tiny_video_unet(sample, 50, text).sample
        with_fps = tiny_video_unet(sample, 50, text, fps=torch.tensor([12.0])).sample
        assert torch.equal(plain, with_fps)
        tiny_video_unet.fps_embedding.mlp[-1].weight.normal_()
        trained_fps = tiny_video_unet(sample, 50, text, fps=torch.tensor([12.0])).sample
    assert (trained_fps - plain).abs().max() > 1e-4


def test_image_embedding_projector(tiny_unet2d):
    video_unet = modeling.inflate(tiny_unet2d, "make_a_video", head_dim=8, image_embed_dim=24, num_image_tokens=3)
    tokens = video_unet.project_image_embedding(torch.randn(2, 24))
    assert tokens.shape == (2, 3, 32)
    out = video_unet(torch.randn(2, 4, 2, 16, 16), 10, tokens).sample
    assert out.shape == (2, 4, 2, 16, 16)


@pytest.mark.parametrize("variant", VARIANTS)
def test_save_load_round_trip_is_bit_exact(tiny_unet2d, tmp_path, variant):
    video_unet = modeling.inflate(tiny_unet2d, variant, head_dim=8, image_embed_dim=24).eval()
    perturb_temporal(video_unet)
    video_unet.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    loaded = VideoUNet.from_pretrained(tmp_path).eval()
    assert loaded.config.variant == variant
    assert loaded.state_dict().keys() == video_unet.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in video_unet.state_dict().items())
    torch.manual_seed(0)
    sample, text = torch.randn(1, 4, 3, 16, 16), torch.randn(1, 7, 32)
    with torch.no_grad():
        assert torch.equal(video_unet(sample, 7, text).sample, loaded(sample, 7, text).sample)


def test_loading_refuses_pickle_checkpoints(tiny_video_unet, tmp_path):
    tiny_video_unet.save_pretrained(tmp_path, safe_serialization=False)
    with pytest.raises(OSError, match="safetensors"):
        VideoUNet.from_pretrained(tmp_path)


def test_spatial_swap_keeps_temporal_layers(tiny_video_unet, make_unet2d, tmp_path):
    perturb_temporal(tiny_video_unet)
    temporal_before = {n: p.clone() for n, p in modeling.temporal_parameters(tiny_video_unet)}
    finetuned = make_unet2d(seed=7)
    finetuned.save_pretrained(tmp_path / "dreambooth")
    tiny_video_unet.load_spatial_from(tmp_path / "dreambooth")
    for name, p in modeling.temporal_parameters(tiny_video_unet):
        assert torch.equal(p, temporal_before[name])
    finetuned_state = finetuned.state_dict()
    spatial = dict(modeling.spatial_parameters(tiny_video_unet))
    assert spatial and all(torch.equal(p, finetuned_state[n.removeprefix("unet.")]) for n, p in spatial.items())


def test_spatial_swap_rejects_other_architecture(tiny_video_unet, make_unet2d):
    with pytest.raises(ValueError, match="block_out_channels"):
        tiny_video_unet.load_spatial_from(make_unet2d(block_out_channels=(16, 32)))


def test_deepcopy_keeps_hooks_on_the_copy(tiny_video_unet):
    """EMA copies are deep copies: their hooks must run their own temporal layers."""
    import copy

    ema = copy.deepcopy(tiny_video_unet)
    perturb_temporal(ema)
    torch.manual_seed(0)
    sample, text = torch.randn(1, 4, 3, 16, 16), torch.randn(1, 7, 32)
    with torch.no_grad():
        original = tiny_video_unet(sample, 9, text).sample
        copied = ema(sample, 9, text).sample
        fresh = copy.deepcopy(tiny_video_unet)(sample, 9, text).sample
    assert torch.equal(original, fresh)
    assert (copied - original).abs().max() > 1e-4
