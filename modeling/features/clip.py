"""open_clip image and text encoders for CLIPSIM, with the usual pitfalls handled.

* Embeddings are L2-normalised and ``logit_scale`` (x100) is never applied, so
  cosines stay on the 0..1 scale papers report (0.3049 for Make-A-Video).
* OpenAI weights were trained with QuickGELU; it is switched on whenever the
  pretrained tag says so (open_clip itself only warns).
* The model is put in eval mode (no dropout, fixed norms).
* Prompts are tokenised to the model's context length (77): longer ones are cut
  with the end-of-text token kept last.

Sources: a built-in model name with weights from a pretrained tag (resolved by
open_clip from its local cache; no network at run time) or a file path (loaded
with ``weights_only=True`` or safetensors), or a directory holding
``open_clip_config.json`` and ``open_clip_model.safetensors`` (open_clip's
``local-dir:`` layout, used for custom models).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from modeling.features.checkpoint import PathLike

_LOCAL_DIR = "local-dir:"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


class ClipEncoder(nn.Module):
    """Normalised CLIP embeddings for prompts and for uint8 RGB frames."""

    def __init__(self, model: nn.Module, tokenizer, random_init: bool):
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.random_init = random_init
        # open_clip's own eval transform on PIL images: its 8-bit two-pass resize is what published
        # CLIPSIM numbers went through, and a float tensor resize differs from it by up to 2 levels.
        preprocess = open_clip.get_model_preprocess_cfg(model)
        self.transform = open_clip.image_transform(
            preprocess["size"],
            is_train=False,
            mean=preprocess["mean"],
            std=preprocess["std"],
            resize_mode=preprocess.get("resize_mode"),
            interpolation=preprocess.get("interpolation"),
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(prompts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    @torch.no_grad()
    def encode_images(self, frames: np.ndarray) -> torch.Tensor:
        """Embed (n, h, w, 3) uint8 frames after CLIP's own resize, crop and normalisation."""
        return F.normalize(self.model.encode_image(self.prepare(frames).to(self.device)).float(), dim=-1)

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """(n, h, w, 3) uint8 -> (n, 3, size, size) normalised, through open_clip's PIL transform."""
        return torch.stack([self.transform(Image.fromarray(frame)) for frame in frames])


def load_clip(
    model_name: str | PathLike = "ViT-B-32",
    pretrained: str | PathLike | None = None,
    quick_gelu: bool | None = None,
    device: str | torch.device = "cpu",
) -> ClipEncoder:
    """Build a :class:`ClipEncoder`.

    ``model_name``: a built-in open_clip name, or a directory in open_clip's
    ``local-dir:`` layout (then ``pretrained`` must be None). ``pretrained``: a tag
    such as ``"openai"`` or a weights file; None gives random weights (flagged in
    ``random_init``). ``quick_gelu``: None decides from the tag; pass True for
    converted OpenAI weights given as a file.
    """
    local_dir = _as_local_dir(model_name)
    if local_dir is not None and pretrained is not None:
        raise ValueError("a local-dir model carries its own weights; leave `pretrained` unset")
    model_id = f"{_LOCAL_DIR}{local_dir}" if local_dir is not None else str(model_name)
    tag = None if pretrained is None else str(pretrained)
    if quick_gelu is None:
        quick_gelu = tag_uses_quick_gelu(model_id, tag)
    model = open_clip.create_model(model_id, pretrained=tag, force_quick_gelu=quick_gelu, device=device)
    random_init = tag is None and (local_dir is None or not _has_trained_weights(local_dir))
    return ClipEncoder(model, open_clip.get_tokenizer(model_id), random_init).to(device)


def _as_local_dir(model_name: str | PathLike) -> Path | None:
    name = str(model_name)
    if name.startswith(_LOCAL_DIR):
        return Path(name[len(_LOCAL_DIR):])
    return Path(name) if Path(name).is_dir() else None


def tag_uses_quick_gelu(model_id: str, tag: str | None) -> bool:
    """True when ``tag`` names pretrained weights that were trained with QuickGELU."""
    if tag is None or Path(tag).suffix in _WEIGHT_SUFFIXES:
        return False
    return bool(open_clip.get_pretrained_cfg(model_id, tag).get("quick_gelu", False))


# Written beside weights saved straight from a random initialisation (the tiny demo and test models),
# so reports label their numbers as coming from a random-init network.
RANDOM_INIT_MARKER = "RANDOM_INIT"


def _has_trained_weights(directory: Path) -> bool:
    if (directory / RANDOM_INIT_MARKER).exists():
        return False
    return any(path.suffix in _WEIGHT_SUFFIXES for path in directory.iterdir())
