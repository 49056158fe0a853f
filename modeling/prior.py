"""Make-A-Video prior: text embedding -> CLIP image embedding.

A thin wrapper around diffusers' ``PriorTransformer`` (the unCLIP/Karlo prior)
that also owns its diffusion schedule, so one folder holds everything needed to
sample: DDPM over the image embedding with the transformer predicting the clean
embedding (``prediction_type="sample"``), as unCLIP does. The transformer's
``clip_mean``/``clip_std`` map the normalised sample back to CLIP space.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, DDPMScheduler, ModelMixin, PriorTransformer
from diffusers.configuration_utils import register_to_config

from modeling.samplers.ddim import apply_guidance, gaussian_noise


class ImagePrior(ModelMixin, ConfigMixin):
    """``sample(text_embeds, text_hidden_states) -> image_embeds (b, embedding_dim)``.

    ``text_embeds`` is the pooled text embedding ``(b, embedding_dim)``;
    ``text_hidden_states`` the token states ``(b, num_embeddings, embedding_dim)``.
    """

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 32,
        attention_head_dim: int = 64,
        num_layers: int = 20,
        embedding_dim: int = 768,
        num_embeddings: int = 77,
        num_train_timesteps: int = 1000,
        clip_sample_range: float = 10.0,
    ):
        super().__init__()
        self.transformer = PriorTransformer(
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            num_layers=num_layers,
            embedding_dim=embedding_dim,
            num_embeddings=num_embeddings,
        )
        # diffusers starts clip_std at 0, which would map every sample to the mean;
        # identity until the CLIP embedding statistics of the training set are loaded.
        with torch.no_grad():
            self.transformer.clip_std.fill_(1.0)

    def make_scheduler(self) -> DDPMScheduler:
        return DDPMScheduler(
            num_train_timesteps=self.config.num_train_timesteps,
            beta_schedule="squaredcos_cap_v2",
            prediction_type="sample",
            clip_sample=True,
            clip_sample_range=self.config.clip_sample_range,
        )

    def forward(
        self,
        noisy_image_embeds: torch.Tensor,
        timestep: torch.Tensor,
        text_embeds: torch.Tensor,
        text_hidden_states: torch.Tensor,
        text_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted clean (normalised) image embedding; also the training forward."""
        return self.transformer(
            noisy_image_embeds,
            timestep,
            proj_embedding=text_embeds,
            encoder_hidden_states=text_hidden_states,
            attention_mask=text_mask,
        ).predicted_image_embedding

    @torch.no_grad()
    def sample(
        self,
        text_embeds: torch.Tensor,
        text_hidden_states: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        *,
        uncond: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None,
        guidance_scale: float = 4.0,
        num_inference_steps: int = 25,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """DDPM sampling; ``uncond = (embeds, hidden_states, mask)`` of the empty prompt turns on guidance."""
        scheduler = self.make_scheduler()
        scheduler.set_timesteps(num_inference_steps, device=self.device)
        guided = uncond is not None and guidance_scale != 1.0
        if guided:
            text_embeds = torch.cat([uncond[0], text_embeds])
            text_hidden_states = torch.cat([uncond[1], text_hidden_states])
            text_mask = None if text_mask is None else torch.cat([uncond[2], text_mask])
        batch = text_embeds.shape[0] // (2 if guided else 1)
        shape = (batch, self.config.embedding_dim)
        latents = gaussian_noise(shape, generator, self.device, self.dtype) * scheduler.init_noise_sigma
        for timestep in scheduler.timesteps:
            model_input = torch.cat([latents, latents]) if guided else latents
            prediction = self(model_input, timestep, text_embeds, text_hidden_states, text_mask)
            prediction = apply_guidance(prediction, guidance_scale) if guided else prediction
            latents = scheduler.step(prediction, timestep, latents, generator=generator).prev_sample
        return self.transformer.post_process_latents(latents)
