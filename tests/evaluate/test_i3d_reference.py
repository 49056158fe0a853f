"""I3D (FVD) equals pytorch-i3d on the same weights, through the FVD protocol's preprocessing.

``fixtures/i3d_pytorch_i3d.npz``: pytorch-i3d's ``InceptionI3d(400)`` run in a scratch space with
seeded weights (rule in ``reference_weights.py``) on a uint8 video resized to 16x224x224 and
scaled to [-1, 1]; its logits (b, 400, t). FVD uses their mean over t.
"""

from pathlib import Path

import numpy as np
import torch
from reference_weights import recorded_layout, seeded_state_dict

from pipelines.evaluate.features import load_network
from pipelines.evaluate.protocols import PRESETS

FIXTURE = Path(__file__).parent / "fixtures" / "i3d_pytorch_i3d.npz"


@torch.no_grad()
def test_i3d_logits_equal_pytorch_i3d_on_the_same_weights(tmp_path):
    with np.load(FIXTURE, allow_pickle=False) as fixture:
        weights = seeded_state_dict(recorded_layout(fixture), int(fixture["seed"]))
        videos, expected = fixture["videos"], fixture["logits"].mean(axis=2)
    torch.save(weights, tmp_path / "rgb_imagenet.pt")  # pytorch-i3d's file: a plain state dict
    protocol = PRESETS["fvd2048_16f"]
    logits = load_network(protocol, tmp_path / "rgb_imagenet.pt")(protocol.preprocess(videos)).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
