"""Training-side behaviour: freeze policies, gradient checkpointing."""

from __future__ import annotations

import pytest
import torch

import modeling
from modeling.freeze import spatial_transformer_parameters
from modeling.inflation import VARIANTS
from modeling.temporal_layers import TemporalAdapter


def loss_of(video_unet, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    out = video_unet(torch.randn(2, 4, 3, 16, 16), torch.tensor([5, 600]), torch.randn(2, 7, 32), fps=torch.tensor([8.0, 24.0]))
    return (out.sample - torch.randn_like(out.sample)).square().mean()


@pytest.mark.parametrize("policy", ["spatial_frozen", "temporal_and_attention", "all"])
def test_gradients_only_on_trainable_parameters(tiny_unet2d, policy):
    video_unet = modeling.inflate(tiny_unet2d, "videoldm", head_dim=8)
    modeling.apply_freeze_policy(video_unet, policy)
    loss_of(video_unet).backward()
    temporal = {n for n, _ in modeling.temporal_parameters(video_unet)}
    attention = {n for n, _ in spatial_transformer_parameters(video_unet)}
    expected = {
        "spatial_frozen": temporal,
        "temporal_and_attention": temporal | attention,
        "all": {n for n, _ in video_unet.named_parameters()},
    }[policy]
    with_grad = {n for n, p in video_unet.named_parameters() if p.grad is not None}
    trainable = {n for n, p in video_unet.named_parameters() if p.requires_grad}
    assert trainable == expected
    assert with_grad == trainable


def test_also_train_prefix(tiny_video_unet):
    count = modeling.apply_freeze_policy(tiny_video_unet, "spatial_frozen", also_train=("unet.conv_in",))
    assert tiny_video_unet.unet.conv_in.weight.requires_grad
    assert not tiny_video_unet.unet.conv_out.weight.requires_grad
    assert count == sum(p.numel() for p in tiny_video_unet.parameters() if p.requires_grad)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradient_checkpointing_gives_same_gradients(tiny_unet2d, variant):
    video_unet = modeling.inflate(tiny_unet2d, variant, head_dim=8)
    with torch.no_grad():  # off the zero init, so every temporal layer gets a gradient to compare
        torch.manual_seed(1)
        for _, p in modeling.temporal_parameters(video_unet):
            p.add_(0.05 * torch.randn_like(p))
    loss_of(video_unet).backward()
    plain = {n: p.grad.clone() for n, p in video_unet.named_parameters() if p.grad is not None}
    video_unet.zero_grad(set_to_none=True)
    video_unet.enable_gradient_checkpointing()
    adapters = [m for m in video_unet.modules() if isinstance(m, TemporalAdapter)]
    # LaVie's layers sit inside the transformer blocks, which diffusers checkpoints itself.
    assert (adapters or variant == "lavie") and all(a.gradient_checkpointing for a in adapters)
    loss_of(video_unet).backward()
    for name, grad in plain.items():
        torch.testing.assert_close(dict(video_unet.named_parameters())[name].grad, grad, atol=1e-5, rtol=1e-4)
