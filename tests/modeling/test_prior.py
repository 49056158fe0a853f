"""Text -> CLIP image embedding prior on a tiny PriorTransformer."""

from pathlib import Path

import torch

from modeling.prior import ImagePrior
from modeling.samplers.ddim import make_generator

TINY_PRIOR = dict(num_attention_heads=2, attention_head_dim=8, num_layers=1, embedding_dim=16, num_embeddings=5)


def tiny_prior() -> ImagePrior:
    torch.manual_seed(0)
    return ImagePrior(**TINY_PRIOR).eval()


def text_inputs(seed: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 16, generator=generator), torch.randn(batch, 5, 16, generator=generator)


def test_sample_shape_determinism_and_text_dependence():
    prior = tiny_prior()
    embeds, hidden = text_inputs(0)
    uncond = (torch.zeros(2, 16), torch.zeros(2, 5, 16), None)
    sample = lambda e, h, seed: prior.sample(e, h, uncond=uncond, num_inference_steps=4, generator=make_generator(seed))
    image_embeds = sample(embeds, hidden, 0)
    assert image_embeds.shape == (2, 16) and torch.isfinite(image_embeds).all()
    assert torch.equal(image_embeds, sample(embeds, hidden, 0))
    assert not torch.allclose(image_embeds, sample(*text_inputs(1), 0))


def test_guidance_matches_two_separate_predictions():
    prior = tiny_prior()
    embeds, hidden = text_inputs(0, batch=1)
    noisy, t = torch.randn(1, 16), torch.tensor(10)
    with torch.no_grad():
        cond = prior(noisy, t, embeds, hidden)
        uncond = prior(noisy, t, torch.zeros_like(embeds), torch.zeros_like(hidden))
        both_embeds = torch.cat([torch.zeros_like(embeds), embeds])
        both_hidden = torch.cat([torch.zeros_like(hidden), hidden])
        batched = prior(torch.cat([noisy, noisy]), t, both_embeds, both_hidden)
    assert (batched - torch.cat([uncond, cond])).abs().max() < 1e-5


def test_training_forward_has_gradients():
    prior = tiny_prior().train()
    embeds, hidden = text_inputs(0)
    prior(torch.randn(2, 16), torch.tensor([3, 900]), embeds, hidden).square().mean().backward()
    assert all(p.grad is not None for name, p in prior.named_parameters() if "clip_" not in name)


def test_save_load_round_trip_is_bit_exact(tmp_path: Path):
    prior = tiny_prior()
    with torch.no_grad():
        prior.transformer.clip_std.fill_(2.0)  # normalisation stats are part of the checkpoint
    prior.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = ImagePrior.from_pretrained(tmp_path, use_safetensors=True)
    embeds, hidden = text_inputs(3)
    first = prior.sample(embeds, hidden, num_inference_steps=3, generator=make_generator(5))
    assert torch.equal(first, loaded.sample(embeds, hidden, num_inference_steps=3, generator=make_generator(5)))
