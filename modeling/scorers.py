"""Small scoring networks used by data curation, each loaded from a local weights file.

- :class:`AestheticMLP`: LAION improved aesthetic predictor, 768-1024-128-64-16-1 on L2-normalised
  CLIP ViT-L/14 image embeddings. Its module layout matches LAION's ``.pth`` state_dict keys.
- :class:`ClipNSFWHead`: an NSFW probability head on CLIP image embeddings (input standardisation
  then 64-512-256-1, the layout of LAION's CLIP-based detector), stored as safetensors.
- watermark classifier: timm EfficientNet-B3 with LAION's 1536-625-256-2 head; class 0 = watermark.
- :class:`ClipImageEmbedder`: open_clip image tower (ViT-L/14 by default) from a checkpoint file
  or a ``local-dir:`` folder; embeddings come out L2-normalised.

Weights never come from a hub: every loader takes a path. ``.safetensors`` files load with
safetensors, anything else with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from modeling.features.checkpoint import CheckpointError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WATERMARK_INPUT_SIZE = 256


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    # some checkpoints wrap the weights in a training dict
    return state.get("state_dict", state) if isinstance(state, dict) else state


class AestheticMLP(ModelMixin, ConfigMixin):
    """LAION aesthetic score (about 1..10) from an L2-normalised CLIP image embedding."""

    @register_to_config
    def __init__(self, embed_dim: int = 768):
        super().__init__()
        # Dropout slots keep the indices of LAION's state_dict keys (layers.0, .2, .4, .6, .7).
        self.layers = nn.Sequential(
            nn.Linear(embed_dim, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings).squeeze(-1)

    @classmethod
    def from_weights(cls, path: str | Path) -> "AestheticMLP":
        """From LAION's ``.pth``, a safetensors file, or a ``save_pretrained`` folder; eval mode."""
        if Path(path).is_dir():
            return cls.from_pretrained(str(path)).eval()
        state = load_state_dict_file(path)
        model = cls(embed_dim=state["layers.0.weight"].shape[1])
        model.load_state_dict(state)
        return model.eval()


class ClipNSFWHead(ModelMixin, ConfigMixin):
    """NSFW probability from a CLIP image embedding."""

    @register_to_config
    def __init__(self, embed_dim: int = 768, hidden_dims: Sequence[int] = (64, 512, 256)):
        super().__init__()
        # the detector was trained on standardised embeddings; the statistics ship with the weights
        self.register_buffer("input_mean", torch.zeros(embed_dim))
        self.register_buffer("input_var", torch.ones(embed_dim))
        dims = [embed_dim, *hidden_dims]
        blocks: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(d_in, d_out), nn.ReLU()]
        self.mlp = nn.Sequential(*blocks, nn.Linear(dims[-1], 1))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = (embeddings - self.input_mean) / torch.sqrt(self.input_var + 1e-7)
        return torch.sigmoid(self.mlp(x)).squeeze(-1)

    @classmethod
    def from_weights(cls, path: str | Path) -> "ClipNSFWHead":
        """From a safetensors / torch file (sizes read from the weights) or a ``save_pretrained`` folder."""
        if Path(path).is_dir():
            return cls.from_pretrained(str(path)).eval()
        state = load_state_dict_file(path)
        linear_keys = sorted((k for k in state if k.startswith("mlp.") and k.endswith(".weight")), key=lambda k: int(k.split(".")[1]))
        shapes = [tuple(state[k].shape) for k in linear_keys]
        model = cls(embed_dim=shapes[0][1], hidden_dims=tuple(out for out, _ in shapes[:-1]))
        model.load_state_dict(state)
        return model.eval()


def build_watermark_model() -> nn.Module:
    """EfficientNet-B3 with LAION's watermark head (``efficientnet_b3a`` is timm's old name for it)."""
    import timm

    model = timm.create_model("efficientnet_b3", pretrained=False, num_classes=2)
    model.classifier = nn.Sequential(
        nn.Linear(model.num_features, 625),
        nn.ReLU(),
        nn.Dropout(p=0.3),
        nn.Linear(625, 256),
        nn.ReLU(),
        nn.Linear(256, 2),
    )
    return model


def load_watermark_model(path: str | Path) -> nn.Module:
    model = build_watermark_model()
    model.load_state_dict(load_state_dict_file(path))
    return model.eval()


def _to_tensor(images: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(n, h, w, 3)`` -> normalised float ``(n, 3, size, size)`` (plain resize, as LAION does)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


@torch.inference_mode()
def watermark_probability(model: nn.Module, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """P(watermark) per uint8 RGB image ``(n, h, w, 3)``."""
    device = next(model.parameters()).device
    probabilities = []
    for start in range(0, len(images), batch_size):
        x = _to_tensor(images[start : start + batch_size], WATERMARK_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD).to(device)
        probabilities.append(torch.softmax(model(x).float(), dim=1)[:, 0].cpu())
    return torch.cat(probabilities).numpy() if probabilities else np.zeros(0, dtype=np.float32)


class ClipImageEmbedder:
    """L2-normalised open_clip image embeddings of uint8 RGB images.

    ``model_name`` is an open_clip architecture ("ViT-L-14") with ``weights_path`` a checkpoint file,
    or ``"local-dir:/folder"`` holding ``open_clip_config.json`` and the weights.
    """

    def __init__(self, model_name: str, weights_path: str | Path | None = None, device: torch.device | None = None):
        import open_clip

        if weights_path is None and not model_name.startswith("local-dir:"):
            raise CheckpointError("CLIP weights are needed: give a checkpoint path or a local-dir: model")
        self.device = device or default_device()
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name,
            pretrained=str(weights_path) if weights_path is not None else None,
            device=self.device,
            # an explicit path must load; a silent random-init fallback would fake every score
            require_pretrained=True,
        )
        self.model = model.eval()
        self.preprocess = preprocess

    @torch.inference_mode()
    def __call__(self, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
        from PIL import Image

        out = []
        for start in range(0, len(images), batch_size):
            pixels = torch.stack([self.preprocess(Image.fromarray(img)) for img in images[start : start + batch_size]]).to(self.device)
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                features = self.model.encode_image(pixels)
            out.append(nn.functional.normalize(features.float(), dim=-1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)
