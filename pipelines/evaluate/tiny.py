"""Tiny evaluation fixtures built in code and saved to disk: a cascade folder, an open_clip
folder, and metric protocols small enough for CPU tests and ``t2v demo``.

Everything loads back by path with the real loaders (``Cascade.from_pretrained``,
open_clip's ``local-dir:``); nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTokenizer

from modeling.cascade import Cascade, CascadeConfig
from modeling.features.clip import RANDOM_INIT_MARKER
from modeling.inflation import inflate
from pipelines.evaluate.protocols import PRESETS, CLIPSIMProtocol, FIDProtocol, FVDProtocol, ISProtocol, Protocol
from pipelines.train.tiny import write_tiny_sd

TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    # The real BPE vocabulary and 77-token context, so prompts tokenise as with ViT-B/32.
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def write_tiny_cascade(directory: str | Path, seed: int = 0) -> Path:
    """A base-only cascade (Make-A-Video-inflated tiny SD UNet, 2D VAE) saved under ``directory/cascade``.

    Generates 32x32 frames (16x16 latents); any frame count works.
    """
    directory = Path(directory)
    sd = write_tiny_sd(directory / "tiny-sd", seed=seed)
    unet = UNet2DConditionModel.from_pretrained(sd / "unet")
    torch.manual_seed(seed)
    cascade = Cascade(
        tokenizer=CLIPTokenizer.from_pretrained(sd / "tokenizer"),
        text_encoder=CLIPTextModel.from_pretrained(sd / "text_encoder").eval(),
        base=inflate(unet, "make_a_video", head_dim=8).eval(),
        vae=AutoencoderKL.from_pretrained(sd / "vae").eval(),
        config=CascadeConfig(interpolation_factor=1),
    )
    cascade.save_pretrained(directory / "cascade")
    return directory / "cascade"


def write_tiny_clip(directory: str | Path, seed: int = 0) -> Path:
    """An open_clip ``local-dir`` folder (config + safetensors) with a tiny seeded CLIP."""
    import open_clip  # seconds to import; only callers that need CLIP pay for it

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(
        TINY_CLIP_CONFIG["embed_dim"],
        open_clip.model.CLIPVisionCfg(**TINY_CLIP_CONFIG["vision_cfg"]),
        open_clip.model.CLIPTextCfg(**TINY_CLIP_CONFIG["text_cfg"]),
    )
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG}))
    weights = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(weights, str(directory / "open_clip_model.safetensors"))
    (directory / RANDOM_INIT_MARKER).write_text("weights saved from a random initialisation\n")
    return directory


def tiny_protocols(num_frames: int = 16, num_clips: int = 4) -> dict[str, Protocol]:
    """Metric protocols on few, small frames, IS on ``num_clips`` clips. C3D's classifier fixes IS at 16 frames of
    112x112; the shapes judge needs no weights and is the same at any size."""
    return {
        "shapes": PRESETS["shapes_judge"],
        "fvd": FVDProtocol(name="fvd_tiny", num_frames=num_frames, size=32, num_real=8, num_fake=8),
        "is": ISProtocol(name="is_tiny", num_samples=num_clips, splits=min(2, num_clips)),
        "clipsim": CLIPSIMProtocol(name="clipsim_tiny", num_frames=4, clip_pretrained=None),
        "fid": FIDProtocol(name="fid_tiny", num_frames=2, num_samples=8),
    }
