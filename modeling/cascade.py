"""The inference cascade: prompt -> base video -> interpolation -> super-resolution -> pixels.

One folder holds every part, each saved by its own library as config +
safetensors (tokenizers as JSON), plus ``cascade.json`` naming the parts and
the cascade settings; :meth:`Cascade.from_pretrained` loads the folder in one
call and never unpickles. A single seeded generator drives every stage, so the
same seed gives the same video.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler
from einops import rearrange
from transformers import CLIPTextModel, CLIPTokenizer, CLIPTokenizerFast

from modeling.masked_frames import interpolation_mask, masked_conditioning, place_context
from modeling.prior import ImagePrior
from modeling.samplers.ddim import LATENT_DDIM_CONFIG, VideoDenoiser, ddim_sample, make_generator
from modeling.samplers.noise_prior import video_noise
from modeling.samplers.vidrd import VidRDConfig, vidrd_sample
from modeling.superres import TiledVideoUNet, superres_conditioning
from modeling.temporal_vae import TemporalVAE, decode_video, spatial_scale_factor
from modeling.video_unet import VideoUNet
from storage.media import write_gif, write_mp4

CASCADE_FILE = "cascade.json"

# The only classes a cascade folder may name: loading never imports arbitrary code.
PART_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (VideoUNet, TemporalVAE, AutoencoderKL, ImagePrior, CLIPTextModel, CLIPTokenizer, CLIPTokenizerFast)
}
MODEL_PARTS = ("text_encoder", "base", "interpolation", "superres", "vae", "prior")
# the diffusion stages in the order they sample
SamplingStage = Literal["base", "interpolation", "superres"]
SAMPLING_STAGES: tuple[SamplingStage, ...] = ("base", "interpolation", "superres")


@dataclass
class CascadeConfig:
    fps: float = 8.0  # frame rate of the base model's videos
    interpolation_factor: int = 4  # (F - 1) * k + 1 frames after interpolation
    superres_scale: int = 2  # latent upscaling of the SR stage
    superres_noise_level: int = 20  # noise augmentation of the low-res latents (class label of the SR model)
    superres_tile_size: int | None = None  # latent tile for patch-wise SR; None: whole frames
    superres_tile_overlap: int = 8
    condition_on_fps: bool = True  # pass fps to stages inflated with an fps embedding
    prior_steps: int = 25
    prior_guidance_scale: float = 4.0
    # per stage (base, interpolation, superres): the mixed noise prior it was trained with
    frame_noise_correlation: dict[str, float] = field(default_factory=dict)


@dataclass
class VideoOutput:
    frames: np.ndarray  # uint8 (b, f, H, W, 3)
    fps: float

    def save(self, path: str | os.PathLike, index: int = 0) -> Path:
        """Write video ``index`` as .mp4 or .gif, chosen by the suffix."""
        path = Path(path)
        writers = {".mp4": write_mp4, ".gif": write_gif}
        if path.suffix.lower() not in writers:
            raise ValueError(f"unsupported video suffix {path.suffix!r}; use .mp4 or .gif")
        writers[path.suffix.lower()](path, self.frames[index], self.fps)
        return path


@dataclass
class SamplingRun:
    """Settings shared by every diffusion stage of one ``Cascade.__call__``."""

    generator: torch.Generator | None
    num_inference_steps: int
    guidance_scale: float
    eta: float
    fps: float  # frame rate of the video the stage produces


@dataclass
class TextConditioning:
    """Token states for the UNets and pooled embeddings for the prior, conditional and empty prompt."""

    tokens: torch.Tensor
    uncond_tokens: torch.Tensor
    pooled: torch.Tensor
    uncond_pooled: torch.Tensor
    mask: torch.Tensor
    uncond_mask: torch.Tensor


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """Decoded video in [-1, 1] ``(b, 3, f, H, W)`` -> uint8 ``(b, f, H, W, 3)``."""
    pixels = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(pixels, "b c f h w -> b f h w c").cpu().numpy()


def save_cascade(
    directory: str | os.PathLike, parts: dict[str, Any], scheduler_config: dict[str, Any], config: CascadeConfig
) -> None:
    """Write a cascade folder. A part is a loaded model (or tokenizer), saved by its library, or a
    model folder (a stage export, adapter or whole) copied as it is: no model is built for it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    classes = {}
    for name, part in parts.items():
        if isinstance(part, (str, os.PathLike)):
            shutil.copytree(part, directory / name, dirs_exist_ok=True)
            classes[name] = json.loads((Path(part) / "config.json").read_text())["_class_name"]
        else:
            part.save_pretrained(directory / name, **({} if name == "tokenizer" else {"safe_serialization": True}))
            classes[name] = type(part).__name__
    DDIMScheduler.from_config(scheduler_config).save_pretrained(directory / "scheduler")
    manifest = {"parts": classes, "config": asdict(config)}
    (directory / CASCADE_FILE).write_text(json.dumps(manifest, indent=2))


@dataclass
class Cascade:
    tokenizer: CLIPTokenizer | CLIPTokenizerFast
    text_encoder: CLIPTextModel
    base: VideoUNet
    vae: TemporalVAE | AutoencoderKL
    interpolation: VideoUNet | None = None
    superres: VideoUNet | None = None
    prior: ImagePrior | None = None
    scheduler_config: dict[str, Any] = field(default_factory=lambda: dict(LATENT_DDIM_CONFIG))
    config: CascadeConfig = field(default_factory=CascadeConfig)

    # ---- save / load -------------------------------------------------------------------

    def parts(self) -> dict[str, Any]:
        named = {name: getattr(self, name) for name in MODEL_PARTS}
        return {"tokenizer": self.tokenizer, **{name: part for name, part in named.items() if part is not None}}

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        save_cascade(directory, self.parts(), self.scheduler_config, self.config)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> "Cascade":
        """Load every part of a folder written by :meth:`save_pretrained` (cuda when present;
        pass ``dtype=torch.bfloat16`` there to halve memory)."""
        directory = Path(directory)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        manifest = json.loads((directory / CASCADE_FILE).read_text())
        parts: dict[str, Any] = {}
        for name, class_name in manifest["parts"].items():
            if class_name not in PART_CLASSES:
                raise ValueError(f"{CASCADE_FILE} names unknown class {class_name!r} for part {name!r}")
            part_class = PART_CLASSES[class_name]
            if name == "tokenizer":
                parts[name] = part_class.from_pretrained(directory / name, local_files_only=True)
            else:
                loading = {"use_safetensors": True} | ({"local_files_only": True} if name == "text_encoder" else {})
                parts[name] = part_class.from_pretrained(directory / name, **loading).eval()
        scheduler_config = dict(DDIMScheduler.load_config(directory / "scheduler"))
        cascade = cls(**parts, scheduler_config=scheduler_config, config=CascadeConfig(**manifest["config"]))
        return cascade.to(device, dtype)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Cascade":
        for name in MODEL_PARTS:
            part = getattr(self, name)
            if part is not None:
                # dtype only when asked: diffusers warns on every explicit dtype cast
                part.to(device=device, **({"dtype": dtype} if dtype is not None else {}))
        return self

    # ---- inference ---------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def vae_scale_factor(self) -> int:
        return spatial_scale_factor(self.vae)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str], negative_prompt: str) -> TextConditioning:
        def encode(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            ids = self.tokenizer(
                texts,
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            )
            out = self.text_encoder(ids.input_ids.to(self.text_encoder.device))
            return out.last_hidden_state, out.pooler_output, ids.attention_mask.bool().to(self.device)

        tokens, pooled, mask = encode(prompts)
        uncond_tokens, uncond_pooled, uncond_mask = encode([negative_prompt] * len(prompts))
        return TextConditioning(tokens, uncond_tokens, pooled, uncond_pooled, mask, uncond_mask)

    def base_context(
        self, text: TextConditioning, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Base UNet context: text tokens, followed by the prior's image-embedding tokens when a
        prior is present (Make-A-Video); the unconditional half gets a zero image embedding.
        A base conditioned on image embeddings without a prior gets the zero embedding on both
        halves, as it saw in training's dropped rows."""
        if self.base.image_projector is None:
            return text.tokens, text.uncond_tokens
        if self.prior is None:
            null_embeds = torch.zeros(len(text.tokens), self.base.image_projector.proj.in_features, device=self.device)
            null_tokens = self.base.project_image_embedding(null_embeds.to(text.tokens.dtype))
            return torch.cat([text.tokens, null_tokens], dim=1), torch.cat([text.uncond_tokens, null_tokens], dim=1)
        image_embeds = self.prior.sample(
            text.pooled,
            text.tokens,
            text.mask,
            uncond=(text.uncond_pooled, text.uncond_tokens, text.uncond_mask),
            guidance_scale=self.config.prior_guidance_scale,
            num_inference_steps=self.config.prior_steps,
            generator=generator,
        )
        image_tokens = self.base.project_image_embedding(image_embeds.to(text.tokens.dtype))
        null_tokens = self.base.project_image_embedding(torch.zeros_like(image_embeds).to(text.tokens.dtype))
        return torch.cat([text.tokens, image_tokens], dim=1), torch.cat([text.uncond_tokens, null_tokens], dim=1)

    def _fps_kwargs(self, model: VideoUNet, fps: float, batch: int) -> dict[str, torch.Tensor]:
        if not self.config.condition_on_fps or model.fps_embedding is None:
            return {}
        return {"fps": torch.full((batch,), fps, device=self.device)}

    def _sample(self, stage: str, denoiser: VideoDenoiser, shape: tuple[int, ...], run: SamplingRun) -> torch.Tensor:
        correlation = self.config.frame_noise_correlation.get(stage, 0.0)
        noise = video_noise(shape, correlation, run.generator, self.device, self.base.dtype)
        return ddim_sample(
            denoiser,
            noise,
            scheduler_config=self.scheduler_config,
            num_inference_steps=run.num_inference_steps,
            eta=run.eta,
            generator=run.generator,
        )

    def interpolate(self, latents: torch.Tensor, text: TextConditioning, factor: int, run: SamplingRun) -> torch.Tensor:
        """F keyframes -> (F - 1) * factor + 1 frames at ``run.fps``; keyframes are kept exactly."""
        mask = interpolation_mask(latents.shape[2], factor).to(latents.device)
        context = place_context(latents, mask)
        fps = self._fps_kwargs(self.interpolation, run.fps, len(latents))
        kwargs = {"conditioning": masked_conditioning(context, mask), **fps}
        denoiser = VideoDenoiser(self.interpolation, text.tokens, text.uncond_tokens, run.guidance_scale, kwargs)
        frames = self._sample("interpolation", denoiser, tuple(context.shape), run)
        frames[:, :, mask] = latents
        return frames

    def upscale(self, latents: torch.Tensor, text: TextConditioning, run: SamplingRun) -> torch.Tensor:
        """Latents ``superres_scale`` times larger, conditioned on the noise-augmented input."""
        scale = self.config.superres_scale
        size = (latents.shape[-2] * scale, latents.shape[-1] * scale)
        augment = DDPMScheduler.from_config(self.scheduler_config)
        noise_level = self.config.superres_noise_level
        conditioning, labels = superres_conditioning(latents, size, noise_level, augment, run.generator)
        model = self.superres
        if self.config.superres_tile_size:
            model = TiledVideoUNet(model, self.config.superres_tile_size, self.config.superres_tile_overlap)
        fps = self._fps_kwargs(self.superres, run.fps, len(latents))
        kwargs = {"conditioning": conditioning, "class_labels": labels, **fps}
        denoiser = VideoDenoiser(model, text.tokens, text.uncond_tokens, run.guidance_scale, kwargs)
        return self._sample("superres", denoiser, (*latents.shape[:3], *size), run)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        num_frames: int = 16,
        height: int = 256,
        width: int = 256,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        seed: int | None = 0,
        interpolation_factor: int | None = None,
        long_video: VidRDConfig | None = None,
        negative_prompt: str = "",
        eta: float = 0.0,
        superres_steps: int | None = None,
        superres_guidance_scale: float | None = None,
        last_stage: SamplingStage = "superres",
    ) -> VideoOutput:
        """``height``/``width`` are the final pixel size; with an SR stage the base runs
        ``superres_scale`` times smaller. ``num_frames`` is the base clip length; VidRD
        (``long_video``) chains clips of it. Interpolation runs when its model is present
        and the factor (default ``config.interpolation_factor``) exceeds 1. Super-resolution
        takes its own steps and guidance when given (None: the base's): it runs on the most
        pixels, and its low-res input already fixes what the text asks for. ``last_stage`` stops
        the cascade after that stage and decodes there, at that stage's size (the base alone
        shows what the base learnt, at a fraction of the cost)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        generator = make_generator(seed)
        text = self.encode_prompt(prompts, negative_prompt)
        context, uncond_context = self.base_context(text, generator)
        stages = SAMPLING_STAGES[: SAMPLING_STAGES.index(last_stage) + 1]
        upscale = self.superres is not None and "superres" in stages
        scale = self.vae_scale_factor * (self.config.superres_scale if upscale else 1)
        if height % scale or width % scale:
            raise ValueError(f"height and width must be multiples of {scale}")
        run = SamplingRun(generator, num_inference_steps, guidance_scale, eta, self.config.fps)
        shape = (len(prompts), self.base.out_channels, num_frames, height // scale, width // scale)
        base_kwargs = self._fps_kwargs(self.base, run.fps, len(prompts))
        base = VideoDenoiser(self.base, context, uncond_context, guidance_scale, base_kwargs)
        if long_video is None:
            latents = self._sample("base", base, shape, run)
        else:
            latents = vidrd_sample(
                base,
                shape,
                long_video,
                scheduler_config=self.scheduler_config,
                generator=generator,
                device=self.device,
                dtype=self.base.dtype,
                frame_correlation=self.config.frame_noise_correlation.get("base", 0.0),
            )
        factor = self.config.interpolation_factor if interpolation_factor is None else interpolation_factor
        if self.interpolation is not None and factor > 1 and "interpolation" in stages:
            run = replace(run, fps=run.fps * factor)
            latents = self.interpolate(latents, text, factor, run)
        if upscale:
            steps = num_inference_steps if superres_steps is None else superres_steps
            guidance = guidance_scale if superres_guidance_scale is None else superres_guidance_scale
            latents = self.upscale(latents, text, replace(run, num_inference_steps=steps, guidance_scale=guidance))
        return VideoOutput(frames=to_uint8_frames(decode_video(self.vae, latents.to(self.vae.dtype))), fps=run.fps)
