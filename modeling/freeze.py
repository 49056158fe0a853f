"""Which parameters of an inflated video UNet train, per paper.

Parameters under ``unet.`` belong to the pretrained 2D (spatial) UNet; everything
else (temporal layers, fps embedding, image projector) was added by inflation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

from diffusers.models.attention import BasicTransformerBlock
from torch import nn

FreezePolicy = Literal["spatial_frozen", "temporal_and_attention", "all"]

SPATIAL_PREFIX = "unet."


def temporal_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """(name, parameter) of every layer added by inflation."""
    return ((name, p) for name, p in model.named_parameters() if not name.startswith(SPATIAL_PREFIX))


def spatial_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """(name, parameter) of the pretrained 2D UNet inside the video model."""
    temporal = {name for name, _ in temporal_parameters(model)}
    return ((name, p) for name, p in model.named_parameters() if name not in temporal)


def spatial_transformer_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """Parameters of the 2D UNet's transformer blocks (self-, cross-attention, feed-forward)."""
    for module_name, module in model.named_modules():
        if module_name.startswith(SPATIAL_PREFIX) and isinstance(module, BasicTransformerBlock):
            for name, p in module.named_parameters():
                yield f"{module_name}.{name}", p


def trainable_names(model: nn.Module, policy: FreezePolicy) -> set[str]:
    if policy == "all":  # LaVie joint image-video fine-tuning
        return {name for name, _ in model.named_parameters()}
    names = {name for name, _ in temporal_parameters(model)}  # VideoLDM
    if policy == "temporal_and_attention":  # VidRD: temporal layers + spatial transformer blocks
        names |= {name for name, _ in spatial_transformer_parameters(model)}
    elif policy != "spatial_frozen":
        raise ValueError(f"unknown freeze policy {policy!r}")
    return names


def apply_freeze_policy(model: nn.Module, policy: FreezePolicy, also_train: Sequence[str] = ()) -> int:
    """Set ``requires_grad`` per policy; ``also_train`` adds name prefixes (e.g. a widened
    ``unet.conv_in``). Returns the number of trainable parameters."""
    trainable = trainable_names(model, policy)
    count = 0
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable or name.startswith(tuple(also_train)))
        count += p.numel() if p.requires_grad else 0
    return count
