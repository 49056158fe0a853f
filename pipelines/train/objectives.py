"""One small objective per stage.

An objective is an ``nn.Module`` holding the network it trains: ``prepare`` turns a raw
batch into tensors with the frozen encoders (no grad), ``forward`` returns a dict of
losses whose ``"loss"`` the loop backpropagates. Running the loss inside ``forward``
is what lets DDP/FSDP wrap the objective and synchronise every trainable parameter,
the VAE's discriminator included. ``export_model`` is the part the cascade loads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, ModelMixin, UNet2DConditionModel
from torch import nn
from torch.func import functional_call

from modeling.discriminator import (
    PatchDiscriminator3D,
    discriminator_hinge_loss,
    generator_adversarial_loss,
    reconstruction_loss,
)
from modeling.freeze import apply_freeze_policy
from modeling.inflation import inflate
from modeling.masked_frames import add_mask_channels, drop_context, interpolation_mask, masked_conditioning
from modeling.prior import ImagePrior
from modeling.samplers.ddim import LATENT_DDIM_CONFIG
from modeling.samplers.noise_prior import training_noise
from modeling.superres import superres_conditioning
from modeling.temporal_vae import TemporalVAE
from modeling.video_unet import VideoUNet
from pipelines.train.config import TrainConfig
from pipelines.train.encoders import FrozenEncoders, downsample_video, pixels_to_video
from pipelines.train.preflight import image_conditioning

# The cascade folder part each stage's export becomes.
CASCADE_PART = {
    "base": "base", "interpolation": "interpolation", "superres": "superres", "vae_decoder": "vae", "prior": "prior"
}

Tensors = dict[str, torch.Tensor]


def visible_captions(raw: dict[str, Any]) -> list[str]:
    """Captions with classifier-free-guidance dropout applied (a dropped caption is empty)."""
    return ["" if dropped else str(caption) for caption, dropped in zip(raw["caption"], raw["dropped"])]


def _flags(raw: dict[str, Any], key: str, device: torch.device) -> torch.Tensor:
    return torch.tensor(np.asarray(raw[key]), device=device)  # a copy: Ray Data's arrays are read-only


def scheduler_config(config: TrainConfig, stage: str = "base") -> dict[str, Any]:
    """The forward process of a latent diffusion stage, also the cascade's sampler config: the run's
    noise schedule and the stage's prediction type (both the pretrained folder's unless set)."""
    schedule = config.noise_schedule.model_dump()
    return {**LATENT_DDIM_CONFIG, **schedule, "prediction_type": config.stage(stage).prediction_type}


class Objective(nn.Module):
    def prepare(self, raw: dict[str, Any], encoders: FrozenEncoders) -> Tensors:
        raise NotImplementedError

    def export_model(self) -> ModelMixin:
        raise NotImplementedError


class NoiseObjective(Objective):
    """Eps- or v-prediction MSE of a video UNet at a uniformly drawn timestep."""

    def __init__(self, unet: VideoUNet, schedule: dict[str, Any], condition_on_fps: bool,
                 frame_noise_correlation: float = 0.0) -> None:
        super().__init__()
        self.unet = unet
        self.scheduler = DDPMScheduler.from_config(schedule)
        self.condition_on_fps = condition_on_fps
        self.frame_noise_correlation = frame_noise_correlation

    def export_model(self) -> ModelMixin:
        return self.unet

    def noise_loss(self, latents: torch.Tensor, context: torch.Tensor, **unet_kwargs: Any) -> torch.Tensor:
        noise = training_noise(latents, self.frame_noise_correlation)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(latents),), device=latents.device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        prediction = self.unet(noisy, timesteps, context, **unet_kwargs).sample
        return F.mse_loss(prediction.float(), self.target(latents, noise, timesteps).float())

    def target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the UNet predicts: the noise, or v for v-prediction."""
        if self.scheduler.config.prediction_type == "epsilon":
            return noise
        return self.scheduler.get_velocity(latents, noise, timesteps)

    def video_inputs(self, raw: dict[str, Any], encoders: FrozenEncoders) -> Tensors:
        """Latents, text tokens and the fps / image-row flags shared by every diffusion stage."""
        video = pixels_to_video(raw["pixels"], encoders.device)
        return {
            "latents": encoders.encode_video(video, list(raw["key"])),
            "tokens": encoders.encode_text(visible_captions(raw)).tokens,
            "fps": _flags(raw, "fps", encoders.device).float(),
            "is_image": _flags(raw, "is_image", encoders.device).bool(),
        }

    def frame_kwargs(self, fps: torch.Tensor, is_image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"is_image": is_image, **({"fps": fps} if self.condition_on_fps else {})}


class BaseObjective(NoiseObjective):
    """Text (and, Make-A-Video style, CLIP image embedding) -> video latents."""

    def prepare(self, raw: dict[str, Any], encoders: FrozenEncoders) -> Tensors:
        inputs = self.video_inputs(raw, encoders)
        if self.unet.image_projector is not None:
            # Uncaptioned clips learn from their frame's embedding alone (text-free video
            # training); a CFG-dropped row loses it too, as the cascade's zero null embedding.
            video = pixels_to_video(raw["pixels"], encoders.device)
            keep = ~_flags(raw, "dropped", encoders.device).bool()
            inputs["image_embeds"] = encoders.embed_middle_frame(video) * keep[:, None]
        return inputs

    def forward(self, latents, tokens, fps, is_image, image_embeds=None) -> Tensors:
        context = tokens
        if image_embeds is not None:
            context = torch.cat([tokens, self.unet.project_image_embedding(image_embeds.to(tokens.dtype))], dim=1)
        return {"loss": self.noise_loss(latents, context, **self.frame_kwargs(fps, is_image))}


class InterpolationObjective(NoiseObjective):
    """Masked-frame model: every ``factor``-th latent frame is known context, dropped for CFG."""

    def __init__(self, unet: VideoUNet, schedule: dict[str, Any], condition_on_fps: bool, factor: int,
                 context_dropout: float, frame_noise_correlation: float = 0.0):
        super().__init__(unet, schedule, condition_on_fps, frame_noise_correlation)
        self.factor = factor
        self.context_dropout = context_dropout

    def prepare(self, raw: dict[str, Any], encoders: FrozenEncoders) -> Tensors:
        return self.video_inputs(raw, encoders)

    def forward(self, latents, tokens, fps, is_image) -> Tensors:
        num_context = (latents.shape[2] - 1) // self.factor + 1
        mask = interpolation_mask(num_context, self.factor).to(latents.device)
        context, frame_mask = drop_context(latents, mask, self.context_dropout)
        conditioning = masked_conditioning(context, frame_mask)
        return {"loss": self.noise_loss(latents, tokens, conditioning=conditioning, **self.frame_kwargs(fps, is_image))}


class SuperresObjective(NoiseObjective):
    """High-res latents conditioned on noise-augmented low-res latents of the same clip."""

    def __init__(self, unet: VideoUNet, schedule: dict[str, Any], condition_on_fps: bool, scale: int,
                 max_noise_level: int, frame_noise_correlation: float = 0.0):
        super().__init__(unet, schedule, condition_on_fps, frame_noise_correlation)
        self.scale = scale
        self.max_noise_level = max_noise_level

    def prepare(self, raw: dict[str, Any], encoders: FrozenEncoders) -> Tensors:
        inputs = self.video_inputs(raw, encoders)
        video = pixels_to_video(raw["pixels"], encoders.device)
        keys = [f"{key}|1/{self.scale}" for key in raw["key"]]
        inputs["low_res"] = encoders.encode_video(downsample_video(video, self.scale), keys)
        return inputs

    def forward(self, latents, tokens, fps, is_image, low_res) -> Tensors:
        levels = torch.randint(0, self.max_noise_level, (len(latents),), device=latents.device)
        conditioning, labels = superres_conditioning(low_res, tuple(latents.shape[-2:]), levels, self.scheduler)
        kwargs = {"conditioning": conditioning, "class_labels": labels, **self.frame_kwargs(fps, is_image)}
        return {"loss": self.noise_loss(latents, tokens, **kwargs)}


class VaeDecoderObjective(Objective):
    """Temporal decoder layers: reconstruction + adversarial (3D patch discriminator).

    Both players train in one backward: the generator's adversarial term runs the
    discriminator with detached weights (``functional_call``), so it only moves the
    decoder, and the hinge loss on a detached decode only moves the discriminator.
    """

    def __init__(self, vae: TemporalVAE, discriminator: PatchDiscriminator3D, adversarial_weight: float):
        super().__init__()
        self.vae = vae
        self.discriminator = discriminator
        self.adversarial_weight = adversarial_weight

    def export_model(self) -> ModelMixin:
        return self.vae

    def prepare(self, raw: dict[str, Any], encoders: FrozenEncoders) -> Tensors:
        return {"video": pixels_to_video(raw["pixels"], encoders.device)}

    def forward(self, video) -> Tensors:
        decoded = self.vae.decode(self.vae.encode(video))
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        adversarial = generator_adversarial_loss(functional_call(self.discriminator, frozen, (decoded,)))
        reconstruction = reconstruction_loss(decoded, video)
        critic = discriminator_hinge_loss(self.discriminator(video), self.discriminator(decoded.detach()))
        loss = reconstruction + self.adversarial_weight * adversarial + critic
        parts = {"reconstruction": reconstruction, "adversarial": adversarial, "discriminator": critic}
        return {"loss": loss, **{name: value.detach() for name, value in parts.items()}}


class PriorObjective(Objective):
    """Text embedding -> CLIP image embedding of a frame, predicting the clean embedding (unCLIP)."""

    def __init__(self, prior: ImagePrior):
        super().__init__()
        self.prior = prior
        self.scheduler = prior.make_scheduler()

    def export_model(self) -> ModelMixin:
        return self.prior

    def prepare(self, raw: dict[str, Any], encoders: FrozenEncoders) -> Tensors:
        text = encoders.encode_text(visible_captions(raw))
        image_embeds = encoders.embed_middle_frame(pixels_to_video(raw["pixels"], encoders.device))
        return {"pooled": text.pooled, "tokens": text.tokens, "mask": text.mask, "image_embeds": image_embeds}

    def forward(self, pooled, tokens, mask, image_embeds) -> Tensors:
        transformer = self.prior.transformer
        clean = (image_embeds - transformer.clip_mean) / transformer.clip_std
        noise = torch.randn_like(clean)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(clean),), device=clean.device)
        prediction = self.prior(self.scheduler.add_noise(clean, noise, timesteps), timesteps, pooled, tokens, mask)
        return {"loss": F.mse_loss(prediction.float(), clean.float())}


def encoder_needs(stage: str, config: TrainConfig) -> dict[str, bool]:
    """Which frozen T2I parts a stage's ``prepare`` uses."""
    return {
        "base": {"text": True, "vae": True, "image": image_conditioning(config)},
        "interpolation": {"text": True, "vae": True, "image": False},
        "superres": {"text": True, "vae": True, "image": False},
        "vae_decoder": {"text": False, "vae": False, "image": False},
        "prior": {"text": True, "vae": False, "image": True},
    }[stage]


def _video_unet(unet2d: UNet2DConditionModel, stage_config: Any, **options: Any) -> VideoUNet:
    knobs = stage_config.inflation_options()
    return inflate(unet2d, stage_config.variant, fps_embedding=stage_config.condition_on_fps, **knobs, **options)


def _superres_unet2d(pretrained: str, max_noise_level: int) -> UNet2DConditionModel:
    """The T2I UNet with a class embedding for the noise level (SD x4 upscaler layout),
    zero-initialised so the pretrained behaviour is where training starts."""
    spatial = UNet2DConditionModel.from_pretrained(pretrained, subfolder="unet")
    # Added in place (config follows, as VideoUNet.widen_input): a widened copy doubled peak memory.
    spatial.class_embedding = nn.Embedding(max_noise_level, spatial.time_embedding.linear_2.out_features)
    nn.init.zeros_(spatial.class_embedding.weight)
    spatial.register_to_config(num_class_embeds=max_noise_level)
    return spatial


def build_objective(stage: str, config: TrainConfig, encoders: FrozenEncoders) -> Objective:
    """The stage's network, made from the pretrained T2I folder, with its freeze policy applied."""
    pretrained, settings = config.pretrained, config.stage(stage)
    if stage in ("base", "interpolation"):
        unet2d = UNet2DConditionModel.from_pretrained(pretrained, subfolder="unet")
    if stage == "base":
        image_dim = encoders.image_embed_dim if image_conditioning(config) else None
        unet = _video_unet(unet2d, settings, image_embed_dim=image_dim, num_image_tokens=settings.num_image_tokens)
        apply_freeze_policy(unet, settings.freeze)
        return BaseObjective(unet, scheduler_config(config, stage), settings.condition_on_fps,
                             settings.frame_noise_correlation)
    if stage == "interpolation":
        unet = add_mask_channels(_video_unet(unet2d, settings))
        apply_freeze_policy(unet, settings.freeze, also_train=("unet.conv_in",))
        return InterpolationObjective(
            unet, scheduler_config(config, stage), settings.condition_on_fps, settings.factor, settings.context_dropout,
            settings.frame_noise_correlation,
        )
    if stage == "superres":
        unet = _video_unet(_superres_unet2d(pretrained, settings.max_noise_level), settings)
        unet.widen_input(unet.out_channels)  # the upsampled low-res latents
        apply_freeze_policy(unet, settings.freeze, also_train=("unet.conv_in", "unet.class_embedding"))
        return SuperresObjective(
            unet, scheduler_config(config, stage), settings.condition_on_fps, settings.scale, settings.max_noise_level,
            settings.frame_noise_correlation,
        )
    if stage == "vae_decoder":
        vae = TemporalVAE.from_vae(AutoencoderKL.from_pretrained(pretrained, subfolder="vae"))
        discriminator = PatchDiscriminator3D(
            base_channels=settings.discriminator_channels, num_layers=settings.discriminator_layers, norm_groups=8
        )
        return VaeDecoderObjective(vae.train(), discriminator, settings.adversarial_weight)
    if stage == "prior":
        text_config = encoders.text_encoder.config
        prior = ImagePrior(
            num_attention_heads=settings.num_attention_heads,
            attention_head_dim=settings.attention_head_dim,
            num_layers=settings.num_layers,
            embedding_dim=text_config.hidden_size,
            num_embeddings=encoders.tokenizer.model_max_length,
        )
        return PriorObjective(prior)
    raise ValueError(f"unknown stage {stage!r}")
