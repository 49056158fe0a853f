"""Inflation invariants: right after inflation the video UNet equals the 2D UNet per frame."""

from __future__ import annotations

import math

import pytest
import torch
from einops import rearrange, repeat

import modeling
from modeling.inflation import VARIANTS
from modeling.temporal_layers import (
    AlphaBlend,
    FrameConv3d,
    TemporalAttention,
    TemporalConv1d,
    TemporalConvBlock,
    apply_rotary,
)


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
            if name.endswith("mix_factor"):
                p.fill_(0.0)
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


def test_inflation_leaves_2d_unet_untouched_and_shares_its_weights(tiny_unet2d):
    before = {k: v.clone() for k, v in tiny_unet2d.state_dict().items()}
    video_unet = modeling.inflate(tiny_unet2d, "videoldm", head_dim=8)
    assert all(not m._forward_hooks for m in tiny_unet2d.modules())
    assert all(torch.equal(before[k], v) for k, v in tiny_unet2d.state_dict().items())
    spatial = video_unet.unet.state_dict()
    assert all(spatial[k].data_ptr() == v.data_ptr() for k, v in tiny_unet2d.state_dict().items())  # no copy


def test_videoldm_conv_spans_time_only_unless_the_config_says(tiny_unet2d, tmp_path):
    """3x1x1 kernels by default (VideoLDM, SVD); a model saved with 3x3x3 loads back as 3x3x3."""
    def kernels(model):
        return {m.kernel_size for m in model.modules() if isinstance(m, FrameConv3d)}

    def temporal_count(model):
        return sum(p.numel() for _, p in modeling.freeze.temporal_parameters(model))

    default = modeling.inflate(tiny_unet2d, "videoldm", head_dim=8)
    old = modeling.inflate(tiny_unet2d, "videoldm", head_dim=8, spatial_kernel=3)
    assert kernels(default) == {(3, 1, 1)} and kernels(old) == {(3, 3, 3)}
    assert temporal_count(old) > 3 * temporal_count(default)
    torch.manual_seed(0)
    with torch.no_grad():
        for block in (m for m in old.modules() if isinstance(m, TemporalConvBlock)):
            block.layers[-1].weight.normal_(0, 0.1)
    old.save_pretrained(tmp_path, safe_serialization=True)
    loaded = modeling.VideoUNet.from_pretrained(tmp_path).eval()
    assert kernels(loaded) == {(3, 3, 3)}
    sample, text = torch.randn(1, 4, 2, 8, 8), torch.randn(1, 7, 32)
    with torch.no_grad():
        assert torch.equal(loaded(sample, 10, text).sample, old.eval()(sample, 10, text).sample)
    with pytest.raises(ValueError, match="spatial_kernel must be a positive odd number"):
        modeling.inflate(tiny_unet2d, "videoldm", spatial_kernel=2)


def test_videoldm_is_the_2d_model_for_any_alpha(tiny_unet2d):
    """The temporal branches start at zero where they join, so alpha does not hold the invariant."""
    video_unet = modeling.inflate(tiny_unet2d, "videoldm", head_dim=8).eval()
    blends = [m for m in video_unet.modules() if isinstance(m, AlphaBlend)]
    assert blends and all(abs(b.alpha.item() - 1 / (1 + math.exp(-0.5))) < 1e-6 for b in blends)
    torch.manual_seed(0)
    with torch.no_grad():
        for blend in blends:
            blend.mix_factor.normal_(0, 3)
        sample, text, timesteps = torch.randn(1, 4, 3, 16, 16), torch.randn(1, 7, 32), torch.tensor([400])
        diff = (video_unet(sample, timesteps, text).sample - per_frame_2d(tiny_unet2d, sample, timesteps, text)).abs()
    assert diff.max() < 1e-5


@pytest.mark.parametrize("text_cross_attention", [False, True])
def test_videoldm_every_temporal_tensor_learns(tiny_unet2d, text_cross_attention):
    """After 1 and after 100 AdamW steps every temporal tensor gets a non-zero gradient (the
    old clamped alpha left 9 of 12 branches without one), and a fresh model keeps the invariant."""
    video_unet = modeling.inflate(tiny_unet2d, "videoldm", head_dim=8, text_cross_attention=text_cross_attention)
    modeling.apply_freeze_policy(video_unet, "spatial_frozen")
    trainable = [(n, p) for n, p in video_unet.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([p for _, p in trainable], lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    sample, text = torch.randn(1, 4, 3, 8, 8, generator=generator), torch.randn(1, 7, 32, generator=generator)
    target = torch.randn(1, 4, 3, 8, 8, generator=generator)

    def dead_after_backward() -> list[str]:
        optimizer.zero_grad()
        out = video_unet(sample, torch.tensor([300]), text, fps=torch.tensor([8.0])).sample
        (out - target).square().mean().backward()
        return [n for n, p in trainable if p.grad is None or not p.grad.abs().max() > 0]

    for updates in range(1, 101):
        dead_after_backward()
        optimizer.step()
        if updates in (1, 100):
            dead = dead_after_backward()
            assert not dead, f"after {updates} steps: no gradient for {dead}"
    fresh = modeling.inflate(tiny_unet2d, "videoldm", head_dim=8).eval()
    with torch.no_grad():
        sample16, timesteps = torch.randn(1, 4, 3, 16, 16), torch.tensor([10])
        diff = (fresh(sample16, timesteps, text).sample - per_frame_2d(tiny_unet2d, sample16, timesteps, text)).abs()
    assert diff.max() < 1e-5


def test_videoldm_temporal_attention_reads_the_caption(tiny_unet2d, tmp_path):
    """``text_cross_attention``: the temporal block cross-attends to each clip's own text (sgm's
    ``VideoTransformerBlock.attn2``). At init the model is the 2D one for any text; once its output
    projection learns, a clip's output follows its own caption, also beside image rows, and the
    option is saved with the weights."""
    video_unet = modeling.inflate(tiny_unet2d, "videoldm", head_dim=8, text_cross_attention=True).eval()
    layers = [m for m in video_unet.modules() if isinstance(m, TemporalAttention)]
    assert layers and all(layer.text_attention is not None for layer in layers)
    torch.manual_seed(0)
    sample, timesteps = torch.randn(2, 4, 3, 16, 16), torch.tensor([300, 300])
    text, other = torch.randn(2, 7, 32), torch.randn(2, 7, 32)
    outputs = [layer.text_attention.to_out[0].weight for layer in layers]

    def text_part(context: torch.Tensor) -> torch.Tensor:
        """What the temporal text cross-attention adds: the output minus that with its projection at zero."""
        learnt = [weight.clone() for weight in outputs]
        for weight in outputs:
            weight.zero_()
        without = video_unet(sample, timesteps, context).sample
        for weight, value in zip(outputs, learnt):
            weight.copy_(value)
        return video_unet(sample, timesteps, context).sample - without

    with torch.no_grad():
        diff = (video_unet(sample, timesteps, text).sample - per_frame_2d(tiny_unet2d, sample, timesteps, text)).abs()
        assert diff.max() < 1e-5
        for weight in outputs:
            weight.normal_(0, 0.5)
        out = video_unet(sample, timesteps, text).sample
        # only clip 1's text changes: the temporal layers' part of clip 0 stays, clip 1's moves (the
        # spatial cross-attention reads the text too, so the whole output would change without them)
        part, swapped = text_part(text), text_part(torch.stack([text[0], other[1]]))
        assert part.abs().max() > 1e-3
        assert torch.equal(swapped[0], part[0]) and (swapped[1] - part[1]).abs().max() > 1e-3
        # beside an image row (which skips temporal layers), the video row reads its own text
        mixed = video_unet(sample, timesteps, text, is_image=torch.tensor([True, False])).sample
        assert (mixed[1] - out[1]).abs().max() < 1e-5
        assert (mixed[0] - per_frame_2d(tiny_unet2d, sample, timesteps, text)[0]).abs().max() < 1e-5
    video_unet.save_pretrained(tmp_path, safe_serialization=True)
    loaded = modeling.VideoUNet.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(sample, timesteps, text).sample, out)
    plain = modeling.inflate(tiny_unet2d, "videoldm", head_dim=8)
    assert all(m.text_attention is None for m in plain.modules() if isinstance(m, TemporalAttention))


def test_unknown_variant_is_rejected(tiny_unet2d):
    with pytest.raises(ValueError, match="unknown variant"):
        modeling.inflate(tiny_unet2d, "sora")


def test_temporal_conv_matches_conv3d_and_conv1d():
    """The fast (k, 1) Conv2d path computes the same conv as the textbook layouts."""
    torch.manual_seed(0)
    video = torch.randn(2, 6, 5, 3, 4)
    conv3d = torch.nn.Conv3d(6, 6, (3, 1, 1), padding=(1, 0, 0))
    fast = FrameConv3d(6, 6, (3, 1, 1), padding=(1, 0, 0))
    fast.load_state_dict(conv3d.state_dict())
    assert (fast(video) - conv3d(video)).abs().max() < 1e-5
    layer = TemporalConv1d(6)
    with torch.no_grad():
        layer.conv.weight.normal_()
    rows = rearrange(video, "b c f h w -> (b h w) c f")
    reference = rearrange(layer.conv(rows), "(b h w) c f -> b c f h w", b=2, h=3)
    assert (layer(video) - reference).abs().max() < 1e-5


def test_rotary_rotates_pairs_and_encodes_relative_frames():
    torch.manual_seed(0)
    query, key = torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    rotated = apply_rotary(query)
    assert torch.allclose(rotated[..., 0, :], query[..., 0, :])  # frame 0: no rotation
    assert torch.allclose(rotated.norm(dim=-1), query.norm(dim=-1), atol=1e-5)
    # Frame f rotates the interleaved pair (x_2i, x_2i+1) by f * 10000^(-2i / d).
    angle = 3 * 10000.0 ** (-1 / 4)
    x, y = query[..., 3, 2], query[..., 3, 3]
    assert torch.allclose(rotated[..., 3, 2], x * math.cos(angle) - y * math.sin(angle), atol=1e-5)
    assert torch.allclose(rotated[..., 3, 3], y * math.cos(angle) + x * math.sin(angle), atol=1e-5)
    partial = apply_rotary(query, rotary_dim=4)  # only the first 4 channels turn
    assert torch.equal(partial[..., 4:], query[..., 4:]) and torch.equal(partial[..., :4], apply_rotary(query[..., :4]))
    # Scores depend on the frame offset only: shifting both sequences keeps them.
    scores = apply_rotary(query) @ apply_rotary(key).transpose(-1, -2)
    shifted = apply_rotary(torch.cat([query[..., :1, :], query], dim=-2))[..., 1:, :]
    shifted_key = apply_rotary(torch.cat([key[..., :1, :], key], dim=-2))[..., 1:, :]
    assert torch.allclose(shifted @ shifted_key.transpose(-1, -2), scores, atol=1e-4)
    with pytest.raises(ValueError, match="even head dim"):
        TemporalAttention(12, 4, "rope")


def test_position_tables_made_while_sampling_train_later():
    """Cached tables first built under inference mode must still be savable for backward."""
    layers = [TemporalAttention(8, 2, positions, zero_init=False) for positions in ("rope", "sinusoidal")]
    video = torch.randn(1, 8, 11, 2, 2)  # a frame count no other test uses: a fresh cache entry
    with torch.inference_mode():
        for layer in layers:
            layer(video)
    for layer in layers:
        layer(video.requires_grad_()).sum().backward()
    assert video.grad is not None


def test_alpha_blend_equals_diffusers_alpha_blender():
    from diffusers.models.resnet import AlphaBlender

    blend, reference = AlphaBlend(), AlphaBlender(alpha=0.5, merge_strategy="learned")
    spatial, temporal = torch.randn(2, 4, 3, 5, 5), torch.randn(2, 4, 3, 5, 5)
    for mix_factor in (0.5, -2.0, 7.0):
        with torch.no_grad():
            blend.mix_factor.fill_(mix_factor)
            reference.mix_factor.fill_(mix_factor)
        assert (blend(spatial, temporal) - reference(spatial, temporal)).abs().max() < 1e-6
    assert torch.equal(blend(spatial, spatial.clone()), spatial)


def test_make_a_video_attention_knows_frame_order(tiny_unet2d):
    """Rotary frame positions: off its zero init, reversing the frames no longer just reverses
    the output (a position-free attention is permutation-equivariant)."""
    video_unet = modeling.inflate(tiny_unet2d, "make_a_video", head_dim=8)
    layer = next(m for m in video_unet.modules() if isinstance(m, TemporalAttention))
    assert layer.positions == "rope" and layer.rotary_dim is None
    torch.manual_seed(0)
    with torch.no_grad():
        layer.to_out.weight.normal_()
        video = torch.randn(1, layer.to_out.in_features, 5, 2, 2)
        gap = (layer(video.flip(2)) - layer(video).flip(2)).abs().max()
        layer.positions = "none"
        assert (layer(video.flip(2)) - layer(video).flip(2)).abs().max() < 1e-5
    assert gap > 1e-3
