"""Extra conditioning signals of the video UNet: frame rate and CLIP image embeddings."""

from __future__ import annotations

import torch
from diffusers.models.embeddings import Timesteps
from einops import rearrange
from torch import nn


class FpsEmbedding(nn.Module):
    """Frame rate -> vector added to the UNet's timestep embedding.

    The last layer is zero-initialised so adding it changes nothing at inflation time.
    """

    def __init__(self, time_embed_dim: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequencies = Timesteps(frequency_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.mlp = nn.Sequential(
            nn.Linear(frequency_dim, time_embed_dim),
            nn.SiLU(),
            nn.Linear(time_embed_dim, time_embed_dim),
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, fps: torch.Tensor) -> torch.Tensor:
        features = self.frequencies(fps.float()).to(self.mlp[0].weight.dtype)
        return self.mlp(features)


class ImageEmbeddingProjector(nn.Module):
    """CLIP image embedding (b, d_img) -> ``num_tokens`` context tokens (b, n, d_ctx).

    Make-A-Video trains on videos without text by conditioning on the image embedding
    of a frame; at inference the prior turns text into that embedding.
    """

    def __init__(self, image_embed_dim: int, cross_attention_dim: int, num_tokens: int = 4) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.proj = nn.Linear(image_embed_dim, num_tokens * cross_attention_dim)
        self.norm = nn.LayerNorm(cross_attention_dim)

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        tokens = rearrange(self.proj(image_embeds), "b (n d) -> b n d", n=self.num_tokens)
        return self.norm(tokens)
