"""The frozen parts of the text-to-image model that turn raw batches into training inputs.

Text states come from the T2I text encoder, latents from its VAE and image embeddings
from a CLIP image encoder, all computed on the fly under ``no_grad`` (text states and
VAE posteriors optionally cached on the storage root); only the parts a stage needs
are loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from einops import rearrange
from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from pipelines.train.cache import TensorCache, cached_rows, fingerprint
from storage.location import StorageLocation


@dataclass
class TextStates:
    tokens: torch.Tensor  # (b, n, d) last hidden states
    pooled: torch.Tensor  # (b, d)
    mask: torch.Tensor  # (b, n) bool


def pixels_to_video(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 ``(b, f, H, W, 3)`` -> float ``(b, 3, f, H, W)`` in [-1, 1]."""
    video = torch.tensor(pixels, device=device, dtype=torch.float32) / 127.5 - 1.0
    return rearrange(video, "b f h w c -> b c f h w")


@dataclass
class FrozenEncoders:
    device: torch.device
    tokenizer: CLIPTokenizer | None = None
    text_encoder: CLIPTextModel | None = None
    vae: AutoencoderKL | None = None
    image_encoder: CLIPVisionModelWithProjection | None = None
    text_cache: TensorCache | None = None
    latent_cache: TensorCache | None = None

    @classmethod
    def load(
        cls,
        pretrained: str,
        device: torch.device,
        *,
        text: bool,
        vae: bool,
        image: bool,
        cache_location: StorageLocation | None = None,
        cache: Sequence[str] = (),
        image_encoder: str = "",
    ) -> "FrozenEncoders":
        """Load the requested parts of the T2I folder (or hub id) in eval mode, frozen, the image
        encoder from the ``image_encoder`` folder when given; ``cache`` ("text", "latents") keeps
        their outputs under ``cache_location``."""
        parts: dict = {}
        if text:
            parts["tokenizer"] = CLIPTokenizer.from_pretrained(pretrained, subfolder="tokenizer")
            parts["text_encoder"] = CLIPTextModel.from_pretrained(pretrained, subfolder="text_encoder")
        if vae:
            parts["vae"] = AutoencoderKL.from_pretrained(pretrained, subfolder="vae")
        if image:
            folder, subfolder = (image_encoder, "") if image_encoder else (pretrained, "image_encoder")
            parts["image_encoder"] = CLIPVisionModelWithProjection.from_pretrained(folder, subfolder=subfolder)
        for name, module in parts.items():
            if name != "tokenizer":
                module.requires_grad_(False).eval().to(device)
        caches = {}
        for kind, part, field_name in (("text", "text_encoder", "text_cache"), ("latents", "vae", "latent_cache")):
            if kind in cache and part in parts and cache_location is not None:
                config = parts[part].config  # transformers config object or diffusers FrozenDict
                model = fingerprint(pretrained, config.to_dict() if hasattr(config, "to_dict") else dict(config))
                caches[field_name] = TensorCache(cache_location, kind, model)
        return cls(device=device, **parts, **caches)

    @property
    def image_embed_dim(self) -> int:
        return self.image_encoder.config.projection_dim

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> TextStates:
        def compute(rows: list[int]) -> list[dict[str, torch.Tensor]]:
            ids = self.tokenizer(
                [captions[i] for i in rows],
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            )
            out = self.text_encoder(ids.input_ids.to(self.device))
            parts = zip(out.last_hidden_state, out.pooler_output, ids.attention_mask.bool())
            return [{"tokens": tokens, "pooled": pooled, "mask": mask} for tokens, pooled, mask in parts]

        rows = cached_rows(self.text_cache, list(captions), compute)
        tokens, pooled, mask = (torch.stack([row[k] for row in rows]).to(self.device) for k in ("tokens", "pooled", "mask"))
        return TextStates(tokens, pooled, mask)

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor, keys: list[str] | None = None) -> torch.Tensor:
        """``(b, 3, f, H, W)`` in [-1, 1] -> scaled latents ``(b, c, f, h, w)``, a posterior sample
        as SD trains. With ``keys`` (one per clip sample) the posteriors are cached."""

        def compute(rows: list[int]) -> list[dict[str, torch.Tensor]]:
            frames = rearrange(video[rows], "b c f h w -> (b f) c h w").to(self.vae.dtype)
            moments = self.vae.encode(frames).latent_dist.parameters
            return [{"moments": m} for m in rearrange(moments, "(b f) c h w -> b c f h w", b=len(rows))]

        cache = self.latent_cache if keys is not None else None
        rows = cached_rows(cache, keys or [""] * len(video), compute)
        moments = rearrange(torch.stack([row["moments"] for row in rows]).to(self.device), "b c f h w -> (b f) c h w")
        latents = DiagonalGaussianDistribution(moments).sample() * self.vae.config.scaling_factor
        return rearrange(latents.float(), "(b f) c h w -> b c f h w", f=video.shape[2])

    @torch.no_grad()
    def embed_middle_frame(self, video: torch.Tensor) -> torch.Tensor:
        """CLIP image embedding ``(b, d)`` of each clip's middle frame."""
        frame = video[:, :, video.shape[2] // 2]
        size = self.image_encoder.config.image_size
        frame = F.interpolate((frame + 1) / 2, size=(size, size), mode="bilinear", align_corners=False)
        mean = torch.tensor(OPENAI_CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(OPENAI_CLIP_STD, device=self.device).view(1, 3, 1, 1)
        pixel_values = ((frame - mean) / std).to(self.image_encoder.dtype)
        return self.image_encoder(pixel_values=pixel_values).image_embeds.float()


def downsample_video(video: torch.Tensor, scale: int) -> torch.Tensor:
    """Each frame ``scale`` times smaller (area filter): the low-res input of super-resolution."""
    frames = rearrange(video, "b c f h w -> (b f) c h w")
    small = F.interpolate(frames, scale_factor=1 / scale, mode="area")
    return rearrange(small, "(b f) c h w -> b c f h w", b=video.shape[0])
