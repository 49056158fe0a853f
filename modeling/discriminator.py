"""3D-conv patch discriminator and the losses of the temporal VAE decoder fine-tune.

VideoLDM and VidRD fine-tune only the decoder's temporal layers with
``reconstruction + regularisation + adversarial`` losses, the adversary being a
patch-wise discriminator built from 3D convolutions so it judges short
space-time patches (flicker), not single frames. With the encoder frozen the
KL regulariser of the VAE is a constant and is dropped; what regularises the
decoder is the reconstruction anchor plus the adaptive weight that keeps the
adversarial gradient no larger than the reconstruction one (VQGAN's rule).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


class PatchDiscriminator3D(ModelMixin, ConfigMixin):
    """PatchGAN over ``(f, h, w)``: video ``(b, 3, f, H, W)`` -> logits ``(b, 1, f', h', w')``.

    Each layer halves the spatial size; time is only strided from the second
    layer on so clips of a few frames keep a temporal axis.
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, base_channels: int = 64, num_layers: int = 3, norm_groups: int = 32):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv3d(in_channels, base_channels, kernel_size=(3, 4, 4), stride=(1, 2, 2), padding=1),
            nn.LeakyReLU(0.2),
        ]
        channels = base_channels
        for layer_index in range(1, num_layers):
            out_channels = base_channels * min(2**layer_index, 8)
            layers += [
                nn.Conv3d(channels, out_channels, kernel_size=(3, 4, 4), stride=(2, 2, 2), padding=1, bias=False),
                nn.GroupNorm(min(norm_groups, out_channels), out_channels),
                nn.LeakyReLU(0.2),
            ]
            channels = out_channels
        layers.append(nn.Conv3d(channels, 1, kernel_size=3, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.layers(video)


def discriminator_hinge_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss for the discriminator; pass ``fake`` detached from the decoder."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_adversarial_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge generator loss: raise the discriminator's score of decoded videos."""
    return -logits_fake.mean()


def reconstruction_loss(decoded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel L1, the anchor that keeps the decoder faithful to the frozen encoder."""
    return (decoded - target).abs().mean()


def adaptive_adversarial_weight(
    rec_loss: torch.Tensor, adv_loss: torch.Tensor, last_layer_weight: torch.Tensor, max_weight: float = 1e4
) -> torch.Tensor:
    """Scale the adversarial term so its gradient at the decoder's last layer matches the reconstruction one."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer_weight, retain_graph=True)[0]
    adv_grad = torch.autograd.grad(adv_loss, last_layer_weight, retain_graph=True)[0]
    weight = rec_grad.norm() / (adv_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()


def decoder_finetune_loss(
    decoded: torch.Tensor,
    target: torch.Tensor,
    discriminator: PatchDiscriminator3D,
    last_layer_weight: torch.Tensor | None = None,
    adversarial_scale: float = 0.5,
) -> dict[str, torch.Tensor]:
    """Decoder-side loss: reconstruction + adaptively weighted adversarial term.

    ``last_layer_weight`` is the last trainable weight the gradients reach (a
    temporal conv of :class:`~modeling.temporal_vae.TemporalVAE`); without it
    the adversarial term is weighted by ``adversarial_scale`` alone.
    """
    rec = reconstruction_loss(decoded, target)
    adv = generator_adversarial_loss(discriminator(decoded))
    weight = torch.ones((), device=decoded.device)
    if last_layer_weight is not None:
        weight = adaptive_adversarial_weight(rec, adv, last_layer_weight)
    return {"loss": rec + adversarial_scale * weight * adv, "reconstruction": rec, "adversarial": adv}
