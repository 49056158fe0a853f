"""The pretrained text-to-image model every paper starts from, trained here since none can be
downloaded: a small 2D ``UNet2DConditionModel`` and the small VAE it works in, trained on
image-caption pairs, beside a small frozen CLIP text encoder with CLIP's real BPE tokenizer, saved
as a Stable Diffusion-layout folder that ``train.pretrained`` loads like any SD folder.

Two phases, read top to bottom: the VAE learns to reconstruct the images (MSE plus a small KL),
then, with the VAE frozen and its latents scaled to unit variance as SD's are, the UNet learns
SD 2's v-prediction objective with caption dropout for classifier-free guidance.

The text encoder stays frozen at its seeded initialisation, as SD's CLIP encoder is frozen while
its UNet trains. Trained with the UNet on still captions ("a red circle"), it learnt to fill every
position with the colour and shape, so the words only videos bring ("moving left") came out the
same for every direction and the video stages could not learn them (the base's loss with the
direction words swapped equalled its loss with the true ones to 4 digits). Untrained, every word of
CLIP's vocabulary keeps its own embedding, as words do in a real SD folder's encoder.

Sized to learn the shapes world's colours on 2 CPU cores in minutes (measured with the shapes
judge in ``benchmarks/t2i_learning.py``): the VAE has no mid-block attention and starts with a
nearly deterministic posterior, and the UNet's cross-attention sits at its low-resolution level,
where attention over 64 positions costs a sixteenth of 256.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from einops import rearrange
from pydantic import BaseModel, ConfigDict, Field, model_validator
from transformers import CLIPTextModel, CLIPTokenizer

from modeling.samplers.ddim import LATENT_DDIM_CONFIG
from pipelines.train.tiny import MAX_TOKENS, _image_encoder, _text_encoder, _unet

CLIP_MERGES = 49152 - 256 - 2  # the merges CLIP's vocabulary uses, as in CLIP's simple_tokenizer


class T2IConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(32, ge=8, description="side of the square training images; latents are half of it")
    vae_channels: int = Field(16, ge=4, description="width of the VAE's first level (the second has twice it)")
    vae_steps: int = Field(600, ge=1)
    unet_steps: int = Field(800, ge=1)
    batch_size: int = Field(16, ge=1)
    vae_lr: float = Field(2e-3, gt=0)
    unet_lr: float = Field(2e-3, gt=0)
    prediction_type: Literal["epsilon", "v_prediction"] = Field(
        "v_prediction", description="v learns the global colour of a scene sooner than epsilon at high noise")
    zero_terminal_snr: bool = Field(
        True, description="train and sample with a schedule whose last step is pure noise (Lin et al. 2024): with SD's "
        "schedule the last step keeps 7 % of the image (10 leading DDIM steps start at 12 %), so the UNet learns to "
        "read the scene's colour from that rest, which sampling, starting from pure noise, does not have")
    kl_weight: float = Field(1e-6, ge=0, description="SD's VAE keeps the KL term small")
    caption_dropout: float = Field(0.1, ge=0, le=1, description="empty captions for classifier-free guidance")
    seed: int = 0

    @model_validator(mode="after")
    def _zero_snr_needs_v(self) -> "T2IConfig":
        if self.zero_terminal_snr and self.prediction_type == "epsilon":
            raise ValueError("zero_terminal_snr leaves no signal at the last step to predict epsilon from: "
                             "use prediction_type v_prediction or turn zero_terminal_snr off")
        return self


@dataclass(frozen=True)
class T2IProgress:
    """What ``train_t2i`` reports after every step; the models let a caller sample mid-run."""

    phase: Literal["vae", "unet"]
    step: int
    loss: float
    vae: AutoencoderKL
    unet: UNet2DConditionModel | None = None
    text_encoder: CLIPTextModel | None = None
    tokenizer: CLIPTokenizer | None = None


def t2i_vae(channels: int) -> AutoencoderKL:
    """Two levels: 32x32 images give 16x16 latents. The posterior starts nearly deterministic
    (std e^-5, not 1): unit noise on fresh latents hides the image from the decoder, and at SD's
    small KL weight the encoder takes hundreds of steps to shrink it by itself."""
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(channels, 2 * channels),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
        mid_block_add_attention=False,
    )
    logvar = slice(vae.config.latent_channels, None)  # quant_conv's second half of moments
    with torch.no_grad():
        vae.quant_conv.weight[logvar] = 0
        vae.quant_conv.bias[logvar] = -10
    return vae


def _byte_symbols() -> list[str]:
    """The 256 byte symbols of byte-level BPE in CLIP's order: printable bytes as themselves, the
    rest mapped to code points from 256 up."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def write_clip_tokenizer(directory: str | Path, max_length: int = MAX_TOKENS) -> CLIPTokenizer:
    """CLIP's real tokenizer, rebuilt from the BPE merges open_clip ships (same order as CLIP's vocab)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise RuntimeError("the CLIP tokenizer is built from open_clip's BPE list: pip install open_clip_torch")
    with gzip.open(Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz", "rt", encoding="utf-8") as handle:
        merges = handle.read().split("\n")[1 : CLIP_MERGES + 1]
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(vocab=str(directory / "vocab.json"), merges=str(directory / "merges.txt"),
                              model_max_length=max_length)
    tokenizer.save_pretrained(directory)
    return tokenizer


def _batches(count: int, batch_size: int, steps: int, rng: np.random.Generator):
    """Row indices of each step: a fresh permutation per epoch."""
    order: list[int] = []
    for _ in range(steps):
        while len(order) < batch_size:
            order += rng.permutation(count).tolist()
        yield order[:batch_size]
        del order[:batch_size]


def train_t2i(images: np.ndarray, captions: Sequence[str], directory: str | Path, config: T2IConfig | None = None,
              progress: Callable[[T2IProgress], None] | None = None) -> Path:
    """Train on uint8 ``(n, size, size, 3)`` images and their captions; save the SD folder under
    ``directory``. ``progress`` is called after every step."""
    config = config or T2IConfig()
    if images.ndim != 4 or images.shape[1:] != (config.size, config.size, 3):
        raise ValueError(f"t2i trains on (n, {config.size}, {config.size}, 3) images, got {images.shape}")
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    directory = Path(directory)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pixels = rearrange(torch.tensor(images, dtype=torch.float32) / 127.5 - 1, "n h w c -> n c h w").to(device)

    tokenizer = write_clip_tokenizer(directory / "tokenizer")
    vae = t2i_vae(config.vae_channels).to(device)
    optimiser = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr)
    # decayed to 0 like the video stages: at a constant 5e-3 for 400 steps this small VAE turned
    # red shapes orange (held-out reconstructions: colour 91 %, MSE 0.029; decayed: 100 %, 0.012)
    lr_schedule = get_cosine_schedule_with_warmup(optimiser, 0, config.vae_steps)
    for step, rows in enumerate(_batches(len(pixels), config.batch_size, config.vae_steps, rng)):
        batch = pixels[rows]
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(reconstruction, batch) + config.kl_weight * posterior.kl().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        lr_schedule.step()
        if progress:
            progress(T2IProgress("vae", step, loss.item(), vae))
    vae.requires_grad_(False).eval()
    with torch.no_grad():
        posterior = vae.encode(pixels).latent_dist
    # SD scales posterior samples to unit variance (0.18215 for its VAE); this VAE gets its own factor
    vae.register_to_config(scaling_factor=float(1 / posterior.sample().std()))
    scale = vae.config.scaling_factor

    text_encoder = _text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id).to(device)
    text_encoder.requires_grad_(False).eval()
    unet = _unet(cross_attention_level=1).to(device)  # attention over 8x8, not 16x16, positions
    scheduler = DDPMScheduler.from_config(t2i_schedule(config))
    ids = tokenizer(list(captions) + [""], padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids.to(device)
    empty = len(captions)
    optimiser = torch.optim.AdamW(unet.parameters(), lr=config.unet_lr)
    for step, rows in enumerate(_batches(len(pixels), config.batch_size, config.unet_steps, rng)):
        latents = (posterior.mean[rows] + posterior.std[rows] * torch.randn_like(posterior.std[rows])) * scale
        dropped = rng.random(len(rows)) < config.caption_dropout
        with torch.no_grad():
            text = text_encoder(ids[[empty if d else r for r, d in zip(rows, dropped)]]).last_hidden_state
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(rows),), device=device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        target = noise if config.prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, timesteps)
        loss = F.mse_loss(unet(noisy, timesteps, encoder_hidden_states=text).sample, target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if progress:
            progress(T2IProgress("unet", step, loss.item(), vae, unet, text_encoder, tokenizer))
    return save_sd_folder(directory, unet=unet, vae=vae, text_encoder=text_encoder, scheduler=scheduler)


def t2i_schedule(config: T2IConfig) -> dict[str, Any]:
    """The noise schedule the UNet trains with, saved as the folder's ``scheduler/`` (so the video
    stages inflating it train and sample with it too)."""
    zero_snr = {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"} if config.zero_terminal_snr else {}
    return {**LATENT_DDIM_CONFIG, **zero_snr, "prediction_type": config.prediction_type}


def save_sd_folder(directory: Path, **parts) -> Path:
    """``unet/``, ``vae/``, ``text_encoder/``, ``scheduler/`` (the tokenizer is already there), an
    ``image_encoder/`` for Make-A-Video's image conditioning (untrained: no image-text pairs teach
    it here), and ``model_index.json``."""
    parts["image_encoder"] = _image_encoder()
    for name, part in parts.items():
        kwargs = {} if name == "scheduler" else {"safe_serialization": True}
        part.save_pretrained(directory / name, **kwargs)
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.35.0",
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", "DDPMScheduler"], "safety_checker": [None, None],
             "feature_extractor": [None, None], "image_encoder": ["transformers", "CLIPVisionModelWithProjection"]}
    (directory / "model_index.json").write_text(json.dumps(index, indent=2))
    return directory
