"""I3D (Inception-v1 inflated to 3D, Kinetics-400): the FVD feature network.

FVD uses the 400 pre-softmax logits, averaged over time, of videos scaled to
[-1, 1] (Carreira & Zisserman 2017; Unterthiner et al. 2018). Convolutions and
pools use TensorFlow "SAME" padding and batch norm with eps 1e-3, as in the
original TF-Hub model the published numbers come from.

Accepted weights (``I3D.from_checkpoint``; never unpickled):

* ``pytorch-i3d`` naming (``rgb_imagenet.pt``: ``Conv3d_1a_7x7.conv3d.weight``,
  ``Mixed_3b.b1b.bn.running_mean``, ``logits.conv3d.bias`` ...). This is our own
  naming, so the file loads as is with ``torch.load(weights_only=True)``; a
  ``.safetensors`` copy with the same names loads too.
* StyleGAN-V's ``i3d_torchscript.pt`` is a TorchScript archive (code plus pickled
  constants), refused at load time. Convert it once where it is trusted:
  ``sd = torch.jit.load(p).state_dict()``, rename to our names with
  :func:`modeling.features.checkpoint.match_by_order` (same layer order, every
  shape checked; if the archive has no batch-norm scale tensors, as TF's I3D
  learns none, insert ones first), save with ``safetensors.torch.save_file`` and
  check the known answer below.
* A directory written by ``I3D.save_pretrained`` (config + safetensors).

Known answer of the original FVD code with the real weights: 16 all-zero vs 16
all-255 videos (15 frames, 64x64) give FVD ~131. It needs the real weights, which
cannot be downloaded here, so it is not a test; use it to validate a conversion.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from modeling.features.checkpoint import PathLike, load_into, load_state_dict

Triple = tuple[int, int, int]

# (name, input channels, [b0, b1 reduce, b1, b2 reduce, b2, b3 pool proj]) per inception block.
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}
_FINAL_CHANNELS = 1024
_FINAL_POOL: Triple = (2, 7, 7)


def same_padding(x: torch.Tensor, kernel: Triple, stride: Triple, value: float = 0.0) -> torch.Tensor:
    """Pad (t, h, w) the way TensorFlow's "SAME" does: extra padding goes at the end."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[-3:]), reversed(kernel), reversed(stride)):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class Unit3D(nn.Module):
    """Conv3d with SAME padding, then batch norm and ReLU (or a bare biased conv for logits)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Triple = (1, 1, 1),
                 stride: Triple = (1, 1, 1), logits: bool = False):
        super().__init__()
        self.kernel, self.stride, self.logits = kernel, stride, logits
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=logits)
        if not logits:
            self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(same_padding(x, self.kernel, self.stride))
        return x if self.logits else F.relu(self.bn(x))


class MaxPool3dSame(nn.Module):
    """Max pool with SAME padding; padded cells never win (padded with -inf)."""

    def __init__(self, kernel: Triple, stride: Triple):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(same_padding(x, self.kernel, self.stride, float("-inf")), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1, 1x1->3x3, 1x1->3x3, pool->1x1) concatenated on channels."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]):
        super().__init__()
        self.b0 = Unit3D(in_channels, widths[0])
        self.b1a = Unit3D(in_channels, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, widths[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))]
        return torch.cat(branches, dim=1)


def _trunk(in_channels: int) -> list[tuple[str, nn.Module]]:
    """The layers up to Mixed_5c, in order, under the pytorch-i3d names."""
    mixed = {name: InceptionBlock(channels, widths) for name, (channels, widths) in _MIXED.items()}
    return [
        ("Conv3d_1a_7x7", Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))),
        ("MaxPool3d_2a_3x3", MaxPool3dSame((1, 3, 3), (1, 2, 2))),
        ("Conv3d_2b_1x1", Unit3D(64, 64)),
        ("Conv3d_2c_3x3", Unit3D(64, 192, (3, 3, 3))),
        ("MaxPool3d_3a_3x3", MaxPool3dSame((1, 3, 3), (1, 2, 2))),
        ("Mixed_3b", mixed["Mixed_3b"]),
        ("Mixed_3c", mixed["Mixed_3c"]),
        ("MaxPool3d_4a_3x3", MaxPool3dSame((3, 3, 3), (2, 2, 2))),
        *[(name, mixed[name]) for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f")],
        ("MaxPool3d_5a_2x2", MaxPool3dSame((2, 2, 2), (2, 2, 2))),
        ("Mixed_5b", mixed["Mixed_5b"]),
        ("Mixed_5c", mixed["Mixed_5c"]),
    ]


class I3D(ModelMixin, ConfigMixin):
    """I3D classifier; ``forward`` returns time-averaged pre-softmax logits (b, num_classes).

    Input: (b, 3, t, h, w) RGB in [-1, 1]; the FVD protocol uses t=16 at 224x224.
    """

    @register_to_config
    def __init__(self, num_classes: int = 400, in_channels: int = 3):
        super().__init__()
        self.trunk_names = []
        # Registered directly on the module so parameter names match pytorch-i3d checkpoints.
        for name, layer in _trunk(in_channels):
            self.add_module(name, layer)
            self.trunk_names.append(name)
        self.logits = Unit3D(_FINAL_CHANNELS, num_classes, logits=True)
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                # Variance-preserving init: with PyTorch's default the activations fade
                # layer by layer and random-init features barely depend on the input.
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = video
        for name in self.trunk_names:
            x = getattr(self, name)(x)
        # The original pools a VALID 2x7x7 window (exactly the whole map at 16x224x224);
        # clamping the window keeps smaller test inputs usable.
        window = tuple(min(k, size) for k, size in zip(_FINAL_POOL, x.shape[-3:]))
        x = self.logits(F.avg_pool3d(x, window, stride=1))
        return x.mean(dim=(2, 3, 4))

    @classmethod
    def from_checkpoint(cls, path: PathLike) -> "I3D":
        """Load a single weights file in pytorch-i3d naming (see the module docstring)."""
        state_dict = load_state_dict(path)
        logits_weight = state_dict.get("logits.conv3d.weight")
        if logits_weight is None:
            raise ValueError(f"{path}: no 'logits.conv3d.weight'; not a pytorch-i3d state dict")
        model = cls(num_classes=logits_weight.shape[0], in_channels=state_dict["Conv3d_1a_7x7.conv3d.weight"].shape[1])
        load_into(model, state_dict, path)
        return model.eval()
