"""Inception-v3 pool features (2048-d) for FID on video frames, in two networks.

* ``"pytorch_fid"`` (the default, what FID numbers are computed with): the network of
  pytorch-fid / TF's FID code, for the ``pt_inception-2015-12-05-6726825d.pth`` weights
  (an fc of 1008 rows). torchvision names, but the average pools of the A, C and first E
  blocks do not count padded cells (TensorFlow's average pool) and the last E block pools
  with a max. Run with those weights, torchvision's blocks give features about 15 % off.
* ``"torchvision"``: torchvision's ``inception_v3`` for its ImageNet weights
  (``inception_v3_google-*.pth``, an fc of 1000 rows); auxiliary-classifier tensors are dropped.

Weights come from a path as a plain state dict or safetensors, and must fit the chosen
network: the fc's row count tells the two files apart, and the wrong one is refused, since
it would load without error and give features that are silently off. Both weight sets
expect inputs in [-1, 1], so callers feed [-1, 1] frames at 299x299 directly.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import Inception3, InceptionA, InceptionC, InceptionE

from modeling.features.checkpoint import CheckpointError, PathLike, load_into, load_state_dict, rename_keys

FEATURE_DIM = 2048
INPUT_SIZE = 299
InceptionNetwork = Literal["pytorch_fid", "torchvision"]
# Rows of each network's fc: the tell-tale of which weights a file holds.
FC_ROWS: dict[str, int] = {"pytorch_fid": 1008, "torchvision": 1000}
_WEIGHTS_NAME = {
    "pytorch_fid": "pt_inception-2015-12-05 (pytorch-fid's FID weights)",
    "torchvision": "torchvision's ImageNet Inception-v3",
}


class InceptionFitError(CheckpointError):
    """Inception weights meant for the other network (FID vs torchvision)."""


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's 3x3 average pool with SAME padding averages only the cells inside the image.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class _FIDInceptionA(InceptionA):
    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), branch5x5, branch3x3dbl, self.branch_pool(_tf_avg_pool(x))]


class _FIDInceptionC(InceptionC):
    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        return [self.branch1x1(x), branch7x7, branch7x7dbl, self.branch_pool(_tf_avg_pool(x))]


class _FIDInceptionE(InceptionE):
    """InceptionE whose pool branch uses ``pool``: the TF average in Mixed_7b, a max in Mixed_7c."""

    def __init__(self, in_channels: int, pool):
        super().__init__(in_channels)
        self.pool = pool

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        return [self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(self.pool(x))]


class InceptionPoolFeatures(Inception3):
    """Inception-v3 whose ``forward`` returns the (b, 2048) pool features; the fc is kept only so
    the weights file loads whole (its row count identifies the network)."""

    def __init__(self, network: InceptionNetwork = "pytorch_fid"):
        super().__init__(num_classes=FC_ROWS[network], aux_logits=False, transform_input=False, init_weights=False)
        self.network = network
        if network == "pytorch_fid":
            self.Mixed_5b = _FIDInceptionA(192, pool_features=32)
            self.Mixed_5c = _FIDInceptionA(256, pool_features=64)
            self.Mixed_5d = _FIDInceptionA(288, pool_features=64)
            self.Mixed_6b = _FIDInceptionC(768, channels_7x7=128)
            self.Mixed_6c = _FIDInceptionC(768, channels_7x7=160)
            self.Mixed_6d = _FIDInceptionC(768, channels_7x7=160)
            self.Mixed_6e = _FIDInceptionC(768, channels_7x7=192)
            self.Mixed_7b = _FIDInceptionE(1280, _tf_avg_pool)
            self.Mixed_7c = _FIDInceptionE(2048, _max_pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3, self.maxpool1,
                      self.Conv2d_3b_1x1, self.Conv2d_4a_3x3, self.maxpool2,
                      self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e,
                      self.Mixed_7a, self.Mixed_7b, self.Mixed_7c, self.avgpool):
            x = layer(x)
        return torch.flatten(x, 1)


def inception_features(network: InceptionNetwork = "pytorch_fid") -> InceptionPoolFeatures:
    """Randomly initialised Inception-v3 returning (b, 2048) pool features."""
    return InceptionPoolFeatures(network).eval()


def load_inception_features(path: PathLike, network: InceptionNetwork = "pytorch_fid") -> InceptionPoolFeatures:
    """``network``'s pool-feature Inception with weights from ``path``; weights of the other network are refused."""
    state_dict = rename_keys(load_state_dict(path), lambda name: None if name.startswith("AuxLogits.") else name)
    fc = state_dict.get("fc.weight")
    rows = None if fc is None else fc.shape[0]
    if rows != FC_ROWS[network]:
        other = next((name for name, count in FC_ROWS.items() if count == rows), None)
        holds = f"{_WEIGHTS_NAME[other]} weights" if other else f"an fc of {rows} rows"
        hint = f"; set the FID protocol's network to {other!r} to use them" if other else ""
        raise InceptionFitError(
            f"{path}: holds {holds}, not {_WEIGHTS_NAME[network]} (fc of {FC_ROWS[network]} rows){hint}"
        )
    model = InceptionPoolFeatures(network)
    load_into(model, state_dict, path)
    return model.eval()
