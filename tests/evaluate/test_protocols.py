"""Protocol preprocessing and the value-range guard."""

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter

from pipelines.evaluate.protocols import (
    PRESETS,
    CLIPSIMProtocol,
    FIDProtocol,
    FVDProtocol,
    ISProtocol,
    Protocol,
    ValueRangeError,
    check_value_range,
)


def _uint8_videos(batch: int = 2, frames: int = 16, size: int = 64) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (batch, frames, size, size, 3), dtype=np.uint8)


def test_guard_rejects_signed_unit_floats_where_uint8_is_expected():
    signed = _uint8_videos().astype(np.float32) / 127.5 - 1.0
    with pytest.raises(ValueRangeError, match=r"\[-1, 1\]"):
        FVDProtocol().preprocess(signed)
    with pytest.raises(ValueRangeError):
        check_value_range(signed, "uint8")


def test_guard_rejects_uint8_and_0_255_floats_where_signed_unit_is_expected():
    protocol = FVDProtocol(input_range="signed_unit")
    with pytest.raises(ValueRangeError, match="uint8"):
        protocol.preprocess(_uint8_videos())
    with pytest.raises(ValueRangeError, match="values in"):
        protocol.preprocess(_uint8_videos().astype(np.float32))


def test_signed_unit_input_is_quantised_like_a_saved_video():
    videos = _uint8_videos()
    from_uint8 = FVDProtocol(size=64).preprocess(videos)
    from_signed = FVDProtocol(size=64, input_range="signed_unit").preprocess(videos / 127.5 - 1.0)
    torch.testing.assert_close(from_signed, from_uint8)


def test_stylegan_v_fvd_preprocessing_resizes_to_224_and_scales_to_signed_unit():
    videos = np.zeros((2, 20, 64, 48, 3), np.uint8)
    videos[1] = 255
    inputs = PRESETS["fvd2048_16f"].preprocess(videos)
    assert inputs.shape == (2, 3, 16, 224, 224)  # first 16 frames, channels first
    torch.testing.assert_close(inputs[0], torch.full_like(inputs[0], -1.0))
    torch.testing.assert_close(inputs[1], torch.full_like(inputs[1], 1.0))
    # At 224 already no resampling happens: the values are exactly x / 127.5 - 1.
    row = np.linspace(0, 255, 224).round().astype(np.uint8)
    ramp = np.broadcast_to(row[None, None, None, :, None], (1, 16, 224, 224, 3))
    expected = torch.from_numpy(row / 127.5 - 1).float()
    torch.testing.assert_close(PRESETS["fvd2048_16f"].preprocess(ramp)[0, 0, 0, 0], expected)


def test_too_few_frames_is_an_error():
    with pytest.raises(ValueError, match="16 frames"):
        FVDProtocol().preprocess(_uint8_videos(frames=8))


def test_c3d_preprocessing_subtracts_the_mean_at_112():
    protocol = ISProtocol(mean=(10.0, 20.0, 30.0), channel_order="rgb", pixel_scale=1.0)
    inputs = protocol.preprocess(np.full((1, 16, 128, 171, 3), 100, np.uint8))
    assert inputs.shape == (1, 3, 16, 112, 112)
    torch.testing.assert_close(inputs[0, :, 0, 0, 0], torch.tensor([90.0, 80.0, 70.0]))
    rgb_video = np.full((1, 16, 112, 112, 3), (1, 2, 3), np.uint8)
    bgr = ISProtocol(mean=(0.0, 0.0, 0.0), channel_order="bgr", pixel_scale=1.0).preprocess(rgb_video)
    torch.testing.assert_close(bgr[0, :, 0, 0, 0], torch.tensor([3.0, 2.0, 1.0]))


def test_tganv2_preset_feeds_bgr_x_times_128_plus_128_with_aligned_corners():
    protocol = PRESETS["is_tganv2_c3d"]
    assert (protocol.channel_order, protocol.align_corners) == ("bgr", True)
    video = np.zeros((1, 16, 2, 2, 3), np.uint8)
    video[..., 0] = 255  # pure red
    inputs = protocol.preprocess(video) + torch.tensor(protocol.mean).view(3, 1, 1, 1)
    # x = 255 / 127.5 - 1 = 1 -> 1 * 128 + 128 = 256 in the last (red, in BGR) channel, 0 elsewhere
    torch.testing.assert_close(inputs[0, :, 0, 0, 0], torch.tensor([0.0, 0.0, 256.0]))
    # aligned corners: the corner pixels of the 112x112 frame are the input's corners exactly
    ramp = np.zeros((1, 16, 2, 2, 3), np.uint8)
    ramp[:, :, :, 1] = 255
    resized = ISProtocol(pixel_scale=1.0, mean=(0.0, 0.0, 0.0)).preprocess(ramp)[0, 0, 0, 0]
    assert (resized[0].item(), resized[-1].item()) == (0.0, 255.0)


def test_fid_and_clipsim_preprocessing_shapes():
    videos = _uint8_videos(batch=2, frames=4, size=32)
    fid = FIDProtocol(num_frames=4).preprocess(videos)
    assert fid.shape == (8, 3, 299, 299) and fid.min() >= -1 and fid.max() <= 1
    frames = CLIPSIMProtocol(num_frames=4).preprocess(videos)
    assert frames.shape == (8, 32, 32, 3) and frames.dtype == np.uint8  # open_clip resizes them itself


def test_protocols_round_trip_through_config_json():
    adapter = TypeAdapter(Protocol)
    for protocol in PRESETS.values():
        assert adapter.validate_json(protocol.model_dump_json()) == protocol
    assert PRESETS["is_tganv2_c3d"].num_samples == 2048 * 10
