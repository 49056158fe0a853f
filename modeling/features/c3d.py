"""C3D (Tran et al. 2015) fine-tuned on UCF-101: the classifier behind video Inception Score.

Input: (b, 3, 16, 112, 112), mean-subtracted pixels on the 0..255 scale; output:
pre-softmax logits (b, num_classes). Eight 3x3x3 convolutions, five 2x2x2 max pools
(the first keeps time), then fc6 (8192 -> 4096), fc7, fc8.

pool5 sees 2x7x7 maps and must end at 1x4x4; the two public ports get there differently,
and each one's weights were trained (or converted) for its own way, so ``pool5`` follows
the weights (logits differ by about a third between the two on the same weights):

* ``"cover_all"``: Chainer's ``max_pooling_nd(ksize=2)`` default ``cover_all=True``, i.e.
  no padding and a last window that hangs over the end (PyTorch's ``ceil_mode``): TGANv2's
  C3D, the IS classifier of TGANv2 and StyleGAN-V. The default.
* ``"pad"``: c3d-pytorch's ``MaxPool3d(2, 2, padding=(0, 1, 1))``.

Accepted weights (``C3D.from_checkpoint``; never unpickled):

* PyTorch naming ``conv1, conv2, conv3a, conv3b, conv4a, conv4b, conv5a, conv5b,
  fc6, fc7, fc8`` with ``.weight``/``.bias`` (the layout of c3d-pytorch), as a plain
  ``torch.save`` state dict or safetensors: ``pool5="pad"``.
* Chainer ``save_npz`` archives (TGANv2's ``conv3d_deepnetA_ucf.npz``), keys
  ``conv1a/W``, ``conv2a/b``, ``fc8/W`` ...: read with ``allow_pickle=False`` and renamed;
  ``pool5="cover_all"``.
* A directory written by ``C3D.save_pretrained`` (its config says which pool5).
"""

from __future__ import annotations

import re
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from einops import rearrange
from torch import nn

from modeling.features.checkpoint import CheckpointError, PathLike, StateDict, load_into, load_state_dict, rename_keys

CLIP_SHAPE = (16, 112, 112)
_CONVS = (  # (name, in, out, pool after it as (kernel, padding), "pool5" or None)
    ("conv1", 3, 64, ((1, 2, 2), (0, 0, 0))),
    ("conv2", 64, 128, ((2, 2, 2), (0, 0, 0))),
    ("conv3a", 128, 256, None),
    ("conv3b", 256, 256, ((2, 2, 2), (0, 0, 0))),
    ("conv4a", 256, 512, None),
    ("conv4b", 512, 512, ((2, 2, 2), (0, 0, 0))),
    ("conv5a", 512, 512, None),
    ("conv5b", 512, 512, "pool5"),
)
Pool5 = Literal["cover_all", "pad"]
_FLAT_FEATURES = 512 * 1 * 4 * 4


class C3D(ModelMixin, ConfigMixin):
    """C3D classifier for 16x112x112 clips; ``forward`` returns logits (b, num_classes)."""

    @register_to_config
    def __init__(self, num_classes: int = 101, hidden_dim: int = 4096, pool5: Pool5 = "cover_all"):
        super().__init__()
        if pool5 not in ("cover_all", "pad"):
            raise ValueError(f"pool5 must be 'cover_all' or 'pad', got {pool5!r}")
        for name, in_channels, out_channels, _ in _CONVS:
            self.add_module(name, nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1))
        self.fc6 = nn.Linear(_FLAT_FEATURES, hidden_dim)
        self.fc7 = nn.Linear(hidden_dim, hidden_dim)
        self.fc8 = nn.Linear(hidden_dim, num_classes)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        if tuple(clip.shape[-3:]) != CLIP_SHAPE:
            raise ValueError(f"C3D expects (b, 3, 16, 112, 112) clips, got {tuple(clip.shape)}")
        x = clip
        for name, _, _, pool in _CONVS:
            x = F.relu(getattr(self, name)(x))
            if pool == "pool5":
                x = self._pool5(x)
            elif pool is not None:
                kernel, padding = pool
                x = F.max_pool3d(x, kernel, stride=kernel, padding=padding)
        x = rearrange(x, "b c t h w -> b (c t h w)")
        x = F.relu(self.fc7(F.relu(self.fc6(x))))
        return self.fc8(x)

    def _pool5(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.pool5 == "cover_all":
            return F.max_pool3d(x, 2, stride=2, ceil_mode=True)
        return F.max_pool3d(x, 2, stride=2, padding=(0, 1, 1))

    @classmethod
    def from_checkpoint(cls, path: PathLike) -> "C3D":
        """Load a single weights file in PyTorch or Chainer naming (see the module docstring)."""
        state_dict = load_state_dict(path)
        chainer = any("/" in name for name in state_dict)
        if chainer:
            state_dict = from_chainer(state_dict)
        if "fc8.weight" not in state_dict or "fc6.weight" not in state_dict:
            raise CheckpointError(f"{path}: no fc6/fc8 weights; not a C3D checkpoint in c3d-pytorch or Chainer naming")
        model = cls(num_classes=state_dict["fc8.weight"].shape[0], hidden_dim=state_dict["fc6.weight"].shape[0],
                    pool5="cover_all" if chainer else "pad")
        load_into(model, state_dict, path)
        return model.eval()


def from_chainer(state_dict: StateDict) -> StateDict:
    """Chainer names to ours: ``conv1a/W`` -> ``conv1.weight``; Chainer's Linear is (out, in) as ours."""

    def rename(name: str) -> str | None:
        match = re.fullmatch(r"(?:predictor/)?(conv\d[ab]?|fc\d)/([Wb])", name)
        if match is None:
            return None
        layer, kind = match.groups()
        layer = re.sub(r"^(conv[12])a$", r"\1", layer)  # C3D's first two stages have one conv each
        return f"{layer}.{'weight' if kind == 'W' else 'bias'}"

    return rename_keys(state_dict, rename)
