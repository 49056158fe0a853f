"""The seeded weight rule shared by the reference fixtures in ``fixtures/``.

The reference outputs were recorded in a scratch space by running each reference's own code
(pytorch-fid, TGANv2 under Chainer 7.8.1, c3d-pytorch, pytorch-i3d) with weights drawn by this
rule; the weights are too large to ship, so the tests draw them again: one ``torch.Generator``
seeded with the fixture's ``seed``, the tensors drawn in the recorded layout order.
"""

from __future__ import annotations

import json

import numpy as np
import torch


def seeded_state_dict(layout: list[tuple[str, list[int]]], seed: int) -> dict[str, torch.Tensor]:
    """Variance-preserving random weights for ``layout`` ((name, shape) pairs, in order)."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in layout:
        if name.endswith("running_var"):
            tensor = torch.rand(shape, generator=generator) + 0.5
        elif name.endswith("weight") and len(shape) > 1:
            tensor = torch.randn(shape, generator=generator) * (2.0 / int(np.prod(shape[1:]))) ** 0.5
        elif name.endswith("weight"):  # norm gains (batch norm, layer norm)
            tensor = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        else:
            tensor = 0.1 * torch.randn(shape, generator=generator)
        weights[name] = tensor
    return weights


def recorded_layout(fixture: np.lib.npyio.NpzFile) -> list[tuple[str, list[int]]]:
    return list(zip(fixture["layout_names"].tolist(), json.loads(str(fixture["layout_shapes"]))))
