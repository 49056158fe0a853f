"""A tiny Stable-Diffusion-layout text-to-image folder, built in code and saved to disk,
with settings and sample clips that train it in seconds.

Tests and ``t2v demo`` train from it without downloads: it is an ordinary diffusers
folder (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``) plus
an ``image_encoder/`` (CLIP vision with projection, as unCLIP folders have) for
Make-A-Video's image-embedding conditioning and prior targets. Everything loads back
by path with the libraries' own ``from_pretrained``.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from modeling.samplers.ddim import LATENT_DDIM_CONFIG
from pipelines.train.config import TrainConfig
from storage.blobs import BlobStore
from storage.catalog import Catalog
from storage.location import StorageLocation
from storage.media import probe_video, read_frames, write_mp4

HIDDEN = 32  # text hidden size = cross-attention dim = CLIP image embedding size
MAX_TOKENS = 16


def _write_tokenizer(directory: Path) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over single letters (one token per letter, '</w>' ends a word)."""
    tokens = ["<|startoftext|>", "<|endoftext|>", *string.ascii_lowercase]
    tokens += [letter + "</w>" for letter in string.ascii_lowercase]
    vocab = {token: index for index, token in enumerate(tokens)}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        vocab=str(directory / "vocab.json"), merges=str(directory / "merges.txt"), model_max_length=MAX_TOKENS
    )
    tokenizer.save_pretrained(directory)
    return tokenizer


def _text_encoder(vocab_size: int, bos_token_id: int = 0, eos_token_id: int = 1) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,  # CLIP pads with its end token
    )
    return CLIPTextModel(config)


def _image_encoder() -> CLIPVisionModelWithProjection:
    config = CLIPVisionConfig(
        hidden_size=HIDDEN,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=HIDDEN,
    )
    return CLIPVisionModelWithProjection(config)


def _unet(cross_attention_level: int = 0) -> UNet2DConditionModel:
    """Two levels (16x16 and 8x8 latents), cross-attention at ``cross_attention_level`` only."""
    down = ["DownBlock2D", "DownBlock2D"]
    down[cross_attention_level] = "CrossAttnDownBlock2D"
    up = ["CrossAttnUpBlock2D" if block.startswith("CrossAttn") else "UpBlock2D" for block in down]
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=tuple(down),
        up_block_types=tuple(up[::-1]),
        cross_attention_dim=HIDDEN,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def _vae() -> AutoencoderKL:
    # Two blocks: 2x spatial downsampling, so 32x32 frames give 16x16 latents.
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )


def write_tiny_sd(directory: str | Path, seed: int = 0) -> Path:
    """Build the tiny T2I model with seeded random weights and save it under ``directory``."""
    directory = Path(directory)
    torch.manual_seed(seed)
    tokenizer = _write_tokenizer(directory / "tokenizer")
    parts = {
        "text_encoder": _text_encoder(len(tokenizer)),
        "image_encoder": _image_encoder(),
        "unet": _unet(),
        "vae": _vae(),
    }
    for name, part in parts.items():
        part.save_pretrained(directory / name, safe_serialization=True)
    DDPMScheduler.from_config(LATENT_DDIM_CONFIG).save_pretrained(directory / "scheduler")
    (directory / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.35.0"}, indent=2)
    )
    return directory


def tiny_train_config(pretrained: str | Path, name: str = "tiny", **overrides: Any) -> TrainConfig:
    """Settings that train every stage of the tiny model in seconds on CPU: 32x32 frames
    (16x16 latents), 4-5 frames, 3 steps, one worker; ``overrides`` merge per section."""
    small = dict(steps=3, width=32, height=32, num_frames=4, head_dim=8)
    settings: dict[str, Any] = dict(
        name=name,
        pretrained=str(pretrained),
        num_workers=1,
        cpus_per_worker=0.5,  # leaves CPU to Ray Data on a small machine
        checkpoint_every=2,
        optim=dict(lr=1e-3, ema_decay=0.9),
        data=dict(batch_size=2, fps_min=2.0, fps_max=24.0, prefetch_batches=1),
        base=dict(small),
        interpolation={**small, "num_frames": 5, "factor": 2},
        superres={key: value for key, value in small.items() if key != "head_dim"},  # lavie: the block's heads
        vae_decoder=dict(steps=3, width=32, height=32, num_frames=4, discriminator_channels=8, discriminator_layers=2),
        prior=dict(steps=3, width=32, height=32, num_layers=1, num_attention_heads=2, attention_head_dim=8),
    )
    for key, value in overrides.items():
        settings[key] = {**settings[key], **value} if isinstance(value, dict) and key in settings else value
    return TrainConfig(**settings)


def write_sample_clips(location: StorageLocation, videos: list[tuple[Path, str | None]], workdir: Path, frames: int = 40,
                       labels: dict[str, str] | None = None) -> int:
    """A small ``clips`` table from real videos: the first ``frames`` frames of each, re-encoded
    at 64x48 (H.264) into the blob store, with the given captions (and ``labels`` by file name).
    Returns the table version."""
    blobs = BlobStore(location)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for source, caption in videos:
        info = probe_video(source)
        clip = workdir / f"{source.stem}.mp4"
        write_mp4(clip, read_frames(source, range(min(frames, info.num_frames)), size=(64, 48)), info.fps)
        stored = probe_video(clip)
        rows.append({
            "id": f"clip-{source.stem}", "sample_id": f"sample-{source.stem}", "source_uri": str(source),
            "blob": blobs.put_file(clip).key, "pseudo": False, "start_frame": 0, "end_frame": stored.num_frames,
            "start_time": 0.0, "end_time": stored.duration, "fps": stored.fps, "num_frames": stored.num_frames,
            "width": stored.width, "height": stored.height, "duration": stored.duration,
            "caption": caption, "caption_source": "manifest" if caption else None,
            "label": (labels or {}).get(source.name),
        })
    return Catalog(location).write("clips", rows, run_id="sample-clips").version
