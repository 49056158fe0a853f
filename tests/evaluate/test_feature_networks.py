"""I3D, C3D and Inception-v3 with random weights: shapes and weight loading by path."""

import numpy as np
import pytest
import torch
from torchvision.models import inception_v3

from modeling.features.c3d import C3D
from modeling.features.checkpoint import CheckpointError, match_by_order, save_state_dict
from modeling.features.i3d import I3D
from modeling.features.inception import load_inception_features
from pipelines.evaluate.features import load_network
from pipelines.evaluate.protocols import FVDProtocol


@pytest.fixture(scope="module")
def i3d() -> I3D:
    torch.manual_seed(0)
    return I3D().eval()


@pytest.fixture(scope="module")
def small_clip() -> torch.Tensor:
    # Smaller than the 16x224x224 protocol input: same layers, a fraction of the CPU time.
    return torch.rand(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


@torch.no_grad()
def test_i3d_gives_400_logits_that_depend_on_the_input(i3d, small_clip):
    logits = i3d(small_clip)
    assert logits.shape == (2, 400)
    assert (logits[0] - logits[1]).abs().max() > 1e-3


@torch.no_grad()
def test_i3d_round_trips_through_save_pretrained(i3d, small_clip, tmp_path):
    i3d.save_pretrained(tmp_path / "i3d")
    assert (tmp_path / "i3d" / "diffusion_pytorch_model.safetensors").is_file()
    torch.testing.assert_close(load_network(FVDProtocol(), tmp_path / "i3d")(small_clip), i3d(small_clip))


@torch.no_grad()
def test_i3d_loads_pytorch_i3d_state_dict_without_unpickling(i3d, small_clip, tmp_path):
    # pytorch-i3d's rgb_imagenet.pt layout: a plain state dict under the same names, no batch counters.
    state_dict = {k: v for k, v in i3d.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert "Mixed_4f.b2b.bn.running_var" in state_dict and "logits.conv3d.bias" in state_dict
    torch.save(state_dict, tmp_path / "rgb_imagenet.pt")
    torch.testing.assert_close(I3D.from_checkpoint(tmp_path / "rgb_imagenet.pt")(small_clip), i3d(small_clip))


def test_torchscript_checkpoints_are_refused_with_conversion_advice(tmp_path):
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "i3d_torchscript.pt"))
    with pytest.raises(CheckpointError, match="TorchScript archive.*convert once"):
        I3D.from_checkpoint(tmp_path / "i3d_torchscript.pt")


def test_match_by_order_renames_foreign_names_and_checks_shapes(i3d):
    ours = {k: v for k, v in i3d.state_dict().items() if not k.endswith("num_batches_tracked")}
    foreign = {f"layer{i}": tensor for i, tensor in enumerate(ours.values())}
    assert list(match_by_order(foreign, i3d)) == list(ours)
    first, second = list(foreign)[:2]
    foreign[first], foreign[second] = foreign[second], foreign[first]
    with pytest.raises(CheckpointError, match="order mismatch"):
        match_by_order(foreign, i3d)


def _assert_same_weights(model: torch.nn.Module, reference: torch.nn.Module) -> None:
    expected = reference.state_dict()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], msg=name)


@torch.no_grad()
def test_c3d_gives_101_logits():
    torch.manual_seed(0)
    assert C3D(hidden_dim=32).eval()(torch.randn(1, 3, 16, 112, 112)).shape == (1, 101)


def test_c3d_loads_by_path_in_pytorch_and_chainer_layouts(tmp_path):
    c3d = C3D(hidden_dim=32).eval()  # narrow fc layers keep the files small
    save_state_dict(c3d, tmp_path / "c3d.safetensors")
    _assert_same_weights(C3D.from_checkpoint(tmp_path / "c3d.safetensors"), c3d)
    # Chainer save_npz layout (TGANv2's evaluation code): conv1a/W ... fc8/b.
    chainer = {}
    for name, tensor in c3d.state_dict().items():
        layer, kind = name.split(".")
        layer = {"conv1": "conv1a", "conv2": "conv2a"}.get(layer, layer)
        chainer[f"{layer}/{'W' if kind == 'weight' else 'b'}"] = tensor.numpy()
    np.savez(tmp_path / "c3d_ucf101.npz", **chainer)
    _assert_same_weights(C3D.from_checkpoint(tmp_path / "c3d_ucf101.npz"), c3d)


def test_c3d_rejects_other_clip_shapes():
    with pytest.raises(ValueError, match="16, 112, 112"):
        C3D(hidden_dim=8)(torch.zeros(1, 3, 8, 112, 112))


@torch.no_grad()
def test_torchvision_network_loads_torchvision_inception_weights(tmp_path):
    torch.manual_seed(0)
    # torchvision's checkpoint carries the auxiliary classifier and fc; both are dropped.
    full = inception_v3(weights=None, aux_logits=True, init_weights=False).eval()
    save_state_dict(full, tmp_path / "inception_v3.safetensors")
    features = load_inception_features(tmp_path / "inception_v3.safetensors", network="torchvision")
    frames = torch.rand(2, 3, 299, 299) * 2 - 1
    pooled = features(frames)
    assert pooled.shape == (2, 2048)
    full.fc = torch.nn.Identity()
    torch.testing.assert_close(pooled, full(frames))
