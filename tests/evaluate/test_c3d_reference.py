"""IS with C3D equals TGANv2's Chainer C3D and c3d-pytorch on the same weights (recorded fixtures).

``fixtures/c3d_references.npz`` was recorded in a scratch space: TGANv2's ``C3DVersion1UCF101``
run under Chainer 7.8.1 on a ``save_npz`` archive of seeded weights, a seeded per-pixel mean file
and two uint8 videos fed as TGANv2's generator output (x / 127.5 - 1); c3d-pytorch's ``C3D`` (fc8
output) on seeded weights and a seeded clip. The seeds are in the fixture, the rule in
``reference_weights.py``.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from reference_weights import recorded_layout, seeded_state_dict
from safetensors.torch import save_file

from modeling.features.c3d import C3D
from pipelines.evaluate.features import load_network
from pipelines.evaluate.protocols import PRESETS, MeanFileError, ISProtocol

FIXTURE = Path(__file__).parent / "fixtures" / "c3d_references.npz"


@pytest.fixture(scope="module")
def recorded():
    with np.load(FIXTURE, allow_pickle=False) as fixture:
        return {name: fixture[name] for name in fixture.files} | {"layout": recorded_layout(fixture)}


def _chainer_npz(weights: dict[str, torch.Tensor], path: Path) -> Path:
    """TGANv2's save_npz layout: conv1a/W ... fc8/b."""
    arrays = {}
    for name, tensor in weights.items():
        layer, kind = name.split(".")
        layer = {"conv1": "conv1a", "conv2": "conv2a"}.get(layer, layer)
        arrays[f"{layer}/{'W' if kind == 'weight' else 'b'}"] = tensor.numpy()
    np.savez(path, **arrays)
    return path


@torch.no_grad()
def test_tganv2_preset_and_chainer_weights_give_tganv2_logits(recorded, tmp_path):
    seed = int(recorded["seed"])
    layout = [(name, [101, *shape[1:]] if name.startswith("fc8") else shape) for name, shape in recorded["layout"]]
    weights_path = _chainer_npz(seeded_state_dict(layout, seed), tmp_path / "conv3d_deepnetA_ucf.npz")
    mean = torch.rand((3, 16, 128, 171), generator=torch.Generator().manual_seed(seed + 1)) * 40 + 80
    np.savez(tmp_path / "mean2.npz", mean=mean.numpy())
    protocol = PRESETS["is_tganv2_c3d"].model_copy(update={"mean_file": str(tmp_path / "mean2.npz")})
    network = load_network(protocol, weights_path)
    assert network.config.pool5 == "cover_all"
    logits = network(protocol.preprocess(recorded["videos"])).numpy()
    expected = recorded["tganv2_logits"]
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    # c3d-pytorch's padded pool5 on these weights was this far off (recorded beside the logits).
    assert recorded["padding_relative_diff"] > 0.2


@torch.no_grad()
def test_c3d_pytorch_weights_keep_c3d_pytorch_padding(recorded, tmp_path):
    seed = int(recorded["seed"])
    save_file(seeded_state_dict(recorded["layout"], seed + 2), str(tmp_path / "c3d.safetensors"))
    network = C3D.from_checkpoint(tmp_path / "c3d.safetensors")
    assert network.config.pool5 == "pad" and network.config.num_classes == 487
    clip = torch.rand((1, 3, 16, 112, 112), generator=torch.Generator().manual_seed(seed + 3)) * 255 - 100
    expected = recorded["c3d_pytorch_logits"]
    np.testing.assert_allclose(network(clip).numpy(), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_sample_counts_follow_the_protocols():
    assert (PRESETS["is_tganv2_c3d"].num_samples, PRESETS["is_tganv2_c3d"].splits) == (20480, 10)
    assert (PRESETS["isv2048_ucf"].num_samples, PRESETS["isv2048_ucf"].shuffle_seed) == (2048, 42)
    with pytest.raises(ValueError, match="10 splits need at least 10 samples"):
        ISProtocol(num_samples=4)


def test_a_mean_file_of_the_wrong_shape_is_refused(tmp_path):
    np.savez(tmp_path / "mean.npz", mean=np.zeros((3, 16, 112, 112), np.float32))
    protocol = ISProtocol(mean_file=str(tmp_path / "mean.npz"))
    with pytest.raises(MeanFileError, match=r"expected \(3, 16, h, w\) with h, w >= 120"):
        protocol.preprocess(np.zeros((1, 16, 64, 64, 3), np.uint8))


def test_evaluation_with_fewer_clips_than_the_protocol_is_refused_with_the_number_needed():
    from pipelines.evaluate.job import EvalConfig, SampleCountError, _check_sample_counts

    config = EvalConfig(run="r", metrics=["is"])
    with pytest.raises(SampleCountError, match="scores 20480 clips in 10 splits, this evaluation generates 64"):
        _check_sample_counts(config, ["is"], 64)
    _check_sample_counts(config, ["is"], 20480)
