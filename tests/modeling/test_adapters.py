"""Adapter exports: only the new and trained weights, rebuilt on the pretrained folder in one call."""

from __future__ import annotations

import shutil

import pytest
import torch

import modeling
from modeling.adapters import ADAPTER_WEIGHTS, PretrainedSourceError, save_adapter, save_full
from modeling.masked_frames import add_mask_channels
from modeling.video_unet import VideoUNet
from storage.errors import T2VError


def folder_bytes(folder) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


@pytest.fixture
def trained(tmp_path, tiny_unet2d):
    """A pretrained folder with unet/, and a videoldm interpolation model 'trained' on it: its
    temporal layers moved off their init, conv_in widened (a shape the folder does not have)."""
    tiny_unet2d.save_pretrained(tmp_path / "sd" / "unet")
    model = add_mask_channels(modeling.inflate(tiny_unet2d, "videoldm", head_dim=8))
    modeling.apply_freeze_policy(model, "spatial_frozen")
    torch.manual_seed(1)
    with torch.no_grad():
        for _, parameter in modeling.temporal_parameters(model):
            parameter.add_(torch.randn_like(parameter) * 0.05)
    names = {name for name, p in model.named_parameters() if p.requires_grad}
    return tmp_path / "sd", model.eval(), names


def outputs(model: VideoUNet) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 3, 8, 8, generator=generator)
    conditioning = torch.randn(1, 5, 3, 8, 8, generator=generator)
    with torch.no_grad():
        return model(sample, 10, torch.randn(1, 7, 32, generator=generator), conditioning=conditioning).sample


def test_adapter_holds_what_training_changed_and_loads_back_in_one_call(tmp_path, trained):
    pretrained, model, names = trained
    save_adapter(model, tmp_path / "adapter", model.state_dict(), names, pretrained)
    save_full(model, tmp_path / "full", model.state_dict())
    assert folder_bytes(tmp_path / "adapter") < 0.5 * folder_bytes(tmp_path / "full")
    loaded = VideoUNet.from_pretrained(tmp_path / "adapter")
    assert loaded.unet.conv_in.in_channels == 9  # the widened conv_in travels in the adapter
    assert torch.equal(outputs(loaded), outputs(model))
    assert torch.equal(outputs(VideoUNet.from_pretrained(tmp_path / "full")), outputs(model))


def test_adapter_refuses_a_missing_or_changed_pretrained_folder(tmp_path, trained, make_unet2d):
    pretrained, model, names = trained
    save_adapter(model, tmp_path / "adapter", model.state_dict(), names, pretrained)
    moved = shutil.move(pretrained, tmp_path / "moved")
    with pytest.raises(PretrainedSourceError, match="does not exist") as missing:
        VideoUNet.from_pretrained(tmp_path / "adapter")
    assert isinstance(missing.value, T2VError)
    assert torch.equal(outputs(VideoUNet.from_pretrained(tmp_path / "adapter", pretrained=moved)), outputs(model))
    make_unet2d(seed=5).save_pretrained(tmp_path / "moved" / "unet")  # same layout and size, other weights
    with pytest.raises(PretrainedSourceError, match="trained on other weights"):
        VideoUNet.from_pretrained(tmp_path / "adapter", pretrained=moved)
    assert (tmp_path / "adapter" / ADAPTER_WEIGHTS).is_file()
