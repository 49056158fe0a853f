"""Inception-v3 pool features (2048-d) for FID on video frames.

The architecture is torchvision's ``inception_v3(weights=None, aux_logits=False,
init_weights=False)`` with the classifier replaced by identity. Weights come from
a path in torchvision's naming (e.g. ``inception_v3_google-*.pth`` saved as a plain
state dict, or a safetensors copy); auxiliary-classifier and ``fc`` tensors are
dropped since only the pool features are used. Those Google-ported weights expect
inputs scaled to [-1, 1] (torchvision's ``transform_input`` maps ImageNet-normalised
input back to that), so callers feed [-1, 1] frames at 299x299 directly.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import inception_v3

from modeling.features.checkpoint import PathLike, load_into, load_state_dict, rename_keys

FEATURE_DIM = 2048
INPUT_SIZE = 299


def inception_features() -> nn.Module:
    """Randomly initialised Inception-v3 returning (b, 2048) pool features."""
    model = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=False)
    model.fc = nn.Identity()
    return model.eval()


def load_inception_features(path: PathLike) -> nn.Module:
    """Inception-v3 pool-feature network with weights from ``path`` (torchvision naming)."""
    model = inception_features()
    state_dict = rename_keys(
        load_state_dict(path), lambda name: None if name.startswith(("AuxLogits.", "fc.")) else name
    )
    load_into(model, state_dict, path)
    return model.eval()
