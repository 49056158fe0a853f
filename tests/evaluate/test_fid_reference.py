"""FID features equal pytorch-fid's on the same weights (recorded fixture), and misfit weights are refused."""

from pathlib import Path

import numpy as np
import pytest
import torch
from reference_weights import recorded_layout, seeded_state_dict

from modeling.features.inception import InceptionFitError, load_inception_features
from pipelines.evaluate.features import load_network
from pipelines.evaluate.protocols import FIDProtocol
from storage.errors import T2VError

FIXTURE = Path(__file__).parent / "fixtures" / "fid_inception_pytorch_fid.npz"


@pytest.fixture(scope="module")
def recorded():
    with np.load(FIXTURE, allow_pickle=False) as fixture:
        weights = seeded_state_dict(recorded_layout(fixture), int(fixture["seed"]))
        return weights, fixture["images"], fixture["features"], float(fixture["torchvision_relative_diff"])


@torch.no_grad()
def test_fid_features_equal_pytorch_fid_on_the_same_weights(recorded, tmp_path):
    weights, images, expected, torchvision_diff = recorded
    assert weights["fc.weight"].shape[0] == 1008
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(weights, path)  # pytorch-fid's file: a plain state dict, no aux classifier
    protocol = FIDProtocol(num_frames=1)
    features = load_network(protocol, path)(protocol.preprocess(images[:, None]))
    np.testing.assert_allclose(features.numpy(), expected, rtol=1e-5, atol=1e-5)
    # What the recorded fixture says torchvision's blocks gave with these weights: the bug this fixes.
    assert torchvision_diff > 0.05


def test_weights_of_the_other_network_are_refused_in_one_line(recorded, tmp_path):
    weights = recorded[0]
    fid_file = tmp_path / "pt_inception.pth"
    torch.save(weights, fid_file)
    with pytest.raises(InceptionFitError, match=r"pt_inception-2015-12-05.*not torchvision's.*'pytorch_fid'") as error:
        load_inception_features(fid_file, network="torchvision")
    assert isinstance(error.value, T2VError) and "\n" not in str(error.value)

    torchvision_file = tmp_path / "inception_v3_google.pth"
    torch.save({**weights, "fc.weight": weights["fc.weight"][:1000], "fc.bias": weights["fc.bias"][:1000]},
               torchvision_file)
    with pytest.raises(InceptionFitError, match=r"torchvision's ImageNet.*not pt_inception.*'torchvision'"):
        load_network(FIDProtocol(), torchvision_file)
