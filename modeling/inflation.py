"""Recipes that place temporal layers around a diffusers 2D UNet's blocks, per paper.

- ``make_a_video``: identity Conv1d over time after each ResNet conv, temporal
  attention (zero output projection) after each spatial transformer. The paper gives
  that attention no position encoding, which would leave it permutation-equivariant
  (only the convs would know frame order); t2v rotates its queries and keys by frame
  index (rotary, all channels of each head). Chosen over an added absolute encoding
  because it encodes frame offsets, which carry over to the other frame counts the
  cascade runs (16 base frames, 76 after interpolation), adds no parameters, and leaves
  values untouched, so with the zero output projection the layer is still identity.
- ``videoldm``: temporal-conv residual block (3x1x1 kernels by default, as VideoLDM / SVD)
  after each ResNet block and temporal attention with sinusoidal frame positions after
  each transformer, each merged by a learned ``alpha = sigmoid(mix_factor)``. Each
  temporal branch's last layer starts at zero, so the branch starts equal to the spatial
  output and the model is the 2D one for any alpha; all of it gets gradients from the
  first step on.
  ``text_cross_attention=True`` adds what the temporal block of VideoLDM's authors' later
  code has (Stability's ``sgm``, ``VideoTransformerBlock.attn2`` with the spatial context):
  after the temporal self-attention, every token cross-attends to its clip's caption, its
  output projection zeroed. Off by default, so checkpoints saved before it load as trained.
- ``lavie``: as LaVie (Vchitect/LaVie, ``base/models/attention.py``): inside every
  ``BasicTransformerBlock``, after cross-attention and before the feed-forward,
  ``h + attn_temp(norm_temp(h))`` with the block's own heads, rotary on the first 32
  channels of each head (interleaved pairs, theta 10000) and a learned T5-style relative
  position bias (32 buckets, max distance 32). LaVie zeroes only the output weight and
  keeps a random output bias, so its block starts shifted by a constant; t2v zeroes that
  bias too, so the inflated model starts as the 2D one. ``modeling.lavie_weights`` maps
  LaVie's checkpoint names onto these layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn

from modeling.temporal_layers import (
    AlphaBlend,
    FeedForwardTemporalAdapter,
    FrameContextSlot,
    TemporalAdapter,
    TemporalAttention,
    TemporalConv1d,
    TemporalConvBlock,
)

if TYPE_CHECKING:
    from modeling.video_unet import VideoUNet

Variant = Literal["make_a_video", "videoldm", "lavie"]
VARIANTS: tuple[str, ...] = ("make_a_video", "videoldm", "lavie")


@dataclass
class InflationOptions:
    """Every knob that changes the shapes of the added layers; saved in the model's config,
    so a checkpoint rebuilds with the options it was trained with."""

    head_dim: int = 64  # temporal attention heads = channels // head_dim
    ff_mult: int = 0  # feed-forward after temporal attention (0: none)
    temporal_kernel: int = 3
    # VideoLDM conv's spatial extent. 1 (over time only, 3x1x1) as VideoLDM's and SVD's
    # temporal ResNets; 3 (3x3x3) is 9x the parameters (1.25 B at SD width) and was the
    # default before: such checkpoints say 3 in their config and load as trained.
    spatial_kernel: int = 1
    fps_embedding: bool = True
    text_cross_attention: bool = False  # videoldm: its temporal attention also reads the caption
    image_embed_dim: int | None = None  # CLIP image embedding size for the projector
    num_image_tokens: int = 4

    def __post_init__(self) -> None:
        for name in ("temporal_kernel", "spatial_kernel"):
            kernel = getattr(self, name)
            if kernel < 1 or kernel % 2 == 0:  # same padding keeps the frame count only for odd kernels
                raise ValueError(f"{name} must be a positive odd number, got {kernel}")
        for name in ("head_dim", "num_image_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.ff_mult < 0:
            raise ValueError(f"ff_mult must be 0 (no feed-forward) or more, got {self.ff_mult}")


@dataclass
class Placement:
    """One temporal layer and the spatial module whose output it transforms."""

    host: nn.Module
    layer: nn.Module
    blend: AlphaBlend | None
    # ResNet blocks already run under diffusers' checkpointing; transformers' outputs do not.
    self_checkpoint: bool
    # True: the layer sits inside the host BasicTransformerBlock, before its feed-forward.
    before_feed_forward: bool = False


def _attention(channels: int, options: InflationOptions, positions: str, zero_init: bool,
               context_dim: int | None = None) -> TemporalAttention:
    num_heads = max(1, channels // options.head_dim)
    return TemporalAttention(channels, num_heads, positions, zero_init=zero_init, ff_mult=options.ff_mult,
                             context_dim=context_dim)


def _make_a_video(module: nn.Module, options: InflationOptions, norm_groups: int) -> list[Placement]:
    if isinstance(module, ResnetBlock2D):
        return [
            Placement(conv, TemporalConv1d(conv.out_channels, options.temporal_kernel), None, False)
            for conv in (module.conv1, module.conv2)
        ]
    if isinstance(module, BasicTransformerBlock):
        return []
    channels = module.config.in_channels
    return [Placement(module, _attention(channels, options, "rope", zero_init=True), None, True)]


def _videoldm(module: nn.Module, options: InflationOptions, norm_groups: int) -> list[Placement]:
    if isinstance(module, ResnetBlock2D):
        block = TemporalConvBlock(module.out_channels, norm_groups, options.temporal_kernel, options.spatial_kernel)
        return [Placement(module, block, AlphaBlend(), False)]
    if isinstance(module, BasicTransformerBlock):
        return []
    channels = module.config.in_channels
    context_dim = module.config.cross_attention_dim if options.text_cross_attention else None
    attention = _attention(channels, options, "sinusoidal", zero_init=True, context_dim=context_dim)
    return [Placement(module, attention, AlphaBlend(), True)]


def _lavie(module: nn.Module, options: InflationOptions, norm_groups: int) -> list[Placement]:
    if not isinstance(module, BasicTransformerBlock):
        return []
    channels, num_heads = module.norm3.normalized_shape[0], module.attn1.heads
    attention = TemporalAttention(channels, num_heads, "rope", zero_init=True, rotary_dim=32, relative_bias=True)
    return [Placement(module, attention, None, False, before_feed_forward=True)]


RECIPES: dict[str, Callable[[nn.Module, InflationOptions, int], list[Placement]]] = {
    "make_a_video": _make_a_video,
    "videoldm": _videoldm,
    "lavie": _lavie,
}


def attach_temporal_layers(
    unet: UNet2DConditionModel, variant: str, options: InflationOptions, frames: FrameContextSlot
) -> nn.ModuleDict:
    """Create the variant's temporal layers and hook them onto ``unet``'s modules.

    Returns them keyed by host module path ('.' -> '-', as ModuleDict keys need).
    """
    if variant not in RECIPES:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    recipe = RECIPES[variant]
    host_names = {module: name for name, module in unet.named_modules()}
    adapters = nn.ModuleDict()
    for module in list(host_names):
        if not isinstance(module, (ResnetBlock2D, Transformer2DModel, BasicTransformerBlock)):
            continue
        for placement in recipe(module, options, unet.config.norm_num_groups):
            if placement.before_feed_forward:
                adapter = FeedForwardTemporalAdapter(placement.layer, frames)
                adapter.attach(placement.host)
            else:
                adapter = TemporalAdapter(placement.layer, frames, placement.blend, placement.self_checkpoint)
                placement.host.register_forward_hook(adapter.hook)
            adapters[host_names[placement.host].replace(".", "-")] = adapter
    return adapters


def inflate(unet2d: UNet2DConditionModel, variant: Variant = "make_a_video", **options) -> VideoUNet:
    """Inflate a diffusers 2D UNet into a video UNet; ``unet2d`` itself is left untouched."""
    # Imported here: VideoUNet builds its layers with this module's recipes.
    from modeling.video_unet import VideoUNet

    return VideoUNet.from_unet2d(unet2d, variant=variant, **options)
