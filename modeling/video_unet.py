"""VideoUNet: a diffusers 2D UNet kept intact inside, with temporal layers hooked on.

Frames are folded into the batch for the spatial layers; temporal layers unfold them
(see ``modeling.temporal_layers``). The config records the 2D UNet's config, the
variant and the inflation options, so ``from_pretrained`` rebuilds the architecture
without the original 2D checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, FrozenDict
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from einops import rearrange, repeat
from torch import nn

from modeling.adapters import AdapterLoadingMixin, materialise
from modeling.conditioning import FpsEmbedding, ImageEmbeddingProjector
from modeling.freeze import SPATIAL_PREFIX, spatial_parameters
from modeling.inflation import InflationOptions, Variant, attach_temporal_layers
from modeling.temporal_layers import FrameContext, FrameContextSlot


@dataclass
class VideoUNetOutput(BaseOutput):
    sample: torch.Tensor  # (b, c, f, h, w)


def public_config(config: dict[str, Any]) -> dict[str, Any]:
    """A diffusers config without its private bookkeeping keys (``_class_name``...)."""
    return {key: value for key, value in dict(config).items() if not key.startswith("_")}


def sharing(module: ModelMixin) -> ModelMixin:
    """A new module of ``module``'s class and config whose parameters and buffers are views
    of ``module``'s tensors: built on the meta device (no memory), then assigned."""
    with torch.device("meta"):
        twin = type(module).from_config(module.config)
    materialise(twin, module.state_dict())
    return twin.train(module.training)


def batch_timesteps(timestep: torch.Tensor | float | int, batch: int, device: torch.device) -> torch.Tensor:
    """Scalar or (b,) timestep -> (b,) tensor."""
    timesteps = torch.as_tensor(timestep, device=device)
    return timesteps.expand(batch) if timesteps.ndim == 0 else timesteps


class VideoUNet(AdapterLoadingMixin, ModelMixin, ConfigMixin):
    _supports_gradient_checkpointing = True
    ignore_for_config = ["unet"]
    adapter_source = ("unet", "unet.")  # the spatial layers are a pretrained folder's unet/

    def __init__(
        self,
        unet_config: dict[str, Any],
        variant: Variant = "make_a_video",
        options: dict[str, Any] | None = None,
        unet: UNet2DConditionModel | None = None,
    ) -> None:
        super().__init__()
        inflation = InflationOptions(**(options or {}))
        spatial = unet if unet is not None else UNet2DConditionModel.from_config(unet_config)
        self.register_to_config(unet_config=public_config(spatial.config), variant=variant, options=asdict(inflation))
        self.unet = spatial
        self.frames = FrameContextSlot()
        self.temporal_layers = attach_temporal_layers(spatial, variant, inflation, self.frames)
        time_embed_dim = spatial.time_embedding.linear_2.out_features
        self.fps_embedding = FpsEmbedding(time_embed_dim) if inflation.fps_embedding else None
        if self.fps_embedding is not None:
            spatial.time_embedding.register_forward_hook(self._add_fps_embedding)
        self.image_projector = (
            ImageEmbeddingProjector(inflation.image_embed_dim, self.cross_attention_dim, inflation.num_image_tokens)
            if inflation.image_embed_dim
            else None
        )

    @classmethod
    def from_unet2d(cls, unet2d: UNet2DConditionModel, variant: Variant = "make_a_video", **options) -> VideoUNet:
        """Inflate ``unet2d`` without copying its weights (a copy doubled peak memory at SD
        width): the spatial layers are new modules, so the temporal hooks stay off the
        caller's model, holding the same tensors, so training spatial weights changes both."""
        return cls(unet_config=public_config(unet2d.config), variant=variant, options=options, unet=sharing(unet2d))

    # diffusers-UNet-like attributes the samplers and pipelines read.
    @property
    def in_channels(self) -> int:
        return self.unet.config.in_channels

    @property
    def out_channels(self) -> int:
        return self.unet.config.out_channels

    @property
    def sample_size(self) -> int:
        return self.unet.config.sample_size

    @property
    def cross_attention_dim(self) -> int:
        return self.unet.config.cross_attention_dim

    @property
    def config(self) -> FrozenDict:
        # Derived keys are exposed but never saved (save_config writes _internal_dict).
        derived = {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "sample_size": self.sample_size,
            "cross_attention_dim": self.cross_attention_dim,
        }
        return FrozenDict({**self._internal_dict, **derived})

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        *,
        conditioning: torch.Tensor | None = None,
        fps: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        is_image: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> VideoUNetOutput | tuple[torch.Tensor]:
        """sample (b, c, f, h, w) -> predicted (b, c_out, f, h, w).

        conditioning (b, c_extra, f, h, w) is concatenated on channels before conv_in;
        is_image (b,) rows skip every temporal layer and the fps embedding.
        """
        batch, _, num_frames = sample.shape[:3]
        if fps is not None and self.fps_embedding is None:
            raise ValueError("fps given but this model was inflated with fps_embedding=False")
        if conditioning is not None:
            sample = torch.cat([sample, conditioning.to(sample.dtype)], dim=1)
        video_rows = None if is_image is None or not is_image.any() else ~is_image.bool().to(sample.device)
        self.frames.current = FrameContext(num_frames, video_rows, fps, encoder_hidden_states)

        def per_frame(per_sample: torch.Tensor) -> torch.Tensor:
            return repeat(per_sample, "b ... -> (b f) ...", f=num_frames)

        timesteps = per_frame(batch_timesteps(timestep, batch, sample.device))
        labels = None if class_labels is None else per_frame(batch_timesteps(class_labels, batch, sample.device))
        frames_out = self.unet(
            rearrange(sample, "b c f h w -> (b f) c h w"),
            timesteps,
            per_frame(encoder_hidden_states),
            class_labels=labels,
            return_dict=False,
        )[0]
        out = rearrange(frames_out, "(b f) c h w -> b c f h w", b=batch)
        return VideoUNetOutput(sample=out) if return_dict else (out,)

    def _add_fps_embedding(self, module: nn.Module, args: tuple, time_emb: torch.Tensor) -> torch.Tensor:
        context = self.frames.get()
        if context.fps is None:
            return time_emb
        fps_emb = self.fps_embedding(context.fps.to(time_emb.device)).to(time_emb.dtype)
        if context.video_rows is not None:
            fps_emb = fps_emb * context.video_rows[:, None].to(fps_emb.dtype)
        return time_emb + repeat(fps_emb, "b d -> (b f) d", f=context.num_frames)

    def project_image_embedding(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """CLIP image embedding (b, d_img) -> context tokens usable as encoder_hidden_states."""
        if self.image_projector is None:
            raise ValueError("inflate with image_embed_dim=... to get an image-embedding projector")
        return self.image_projector(image_embeds)

    def widen_input(self, extra_channels: int) -> None:
        """Add ``extra_channels`` zero-initialised input channels to conv_in (in place), so
        the model is unchanged until they learn. Config follows, so save/load rebuilds it."""
        old = self.unet.conv_in
        new = nn.Conv2d(
            old.in_channels + extra_channels,
            old.out_channels,
            old.kernel_size,
            padding=old.padding,
            device=old.weight.device,
            dtype=old.weight.dtype,
        )
        with torch.no_grad():
            new.weight.zero_()
            new.weight[:, : old.in_channels] = old.weight
            new.bias.copy_(old.bias)
        self.unet.conv_in = new
        self.unet.register_to_config(in_channels=new.in_channels)
        self.register_to_config(unet_config=public_config(self.unet.config))

    def load_spatial_from(self, source: UNet2DConditionModel | str | os.PathLike) -> None:
        """Replace every spatial weight with those of another T2I UNet of the same
        architecture (e.g. a DreamBooth fine-tune), keeping the temporal layers."""
        if not isinstance(source, UNet2DConditionModel):
            source = UNet2DConditionModel.from_pretrained(source, use_safetensors=True)
        ours, theirs = public_config(self.unet.config), public_config(source.config)
        differing = sorted(k for k in ours.keys() | theirs.keys() if _normalised(ours.get(k)) != _normalised(theirs.get(k)))
        if differing:
            details = ", ".join(f"{k}: {ours.get(k)!r} vs {theirs.get(k)!r}" for k in differing)
            raise ValueError(f"spatial checkpoint has a different architecture ({details})")
        expected = {name.removeprefix(SPATIAL_PREFIX): p.shape for name, p in spatial_parameters(self)}
        state = source.state_dict()
        bad = sorted(k for k in expected if k not in state or state[k].shape != expected[k])
        if bad:
            raise ValueError(f"spatial checkpoint lacks or reshapes parameters: {bad[:5]}")
        self.unet.load_state_dict(state, strict=True)


def _normalised(value: Any) -> Any:
    """JSON turns tuples into lists; compare configs modulo that."""
    return list(value) if isinstance(value, tuple) else value
