"""Evaluation protocols (what the papers measured) and the video preprocessing each implies.

Every protocol is a pydantic model with a ``kind`` discriminator, so a run config
can hold any of them. Protocols are defined on uint8 RGB videos shaped
(b, frames, h, w, 3), the form real clips and saved mp4s take. Generated videos
straight from a decoder are floats in [-1, 1]; declare ``input_range="signed_unit"``
for those and they are quantised to uint8 first, as saving them would. A
value-range guard rejects the other form, because silently scaling [-1, 1] data
as if it were 0..255 (or the reverse) gives plausible-looking wrong metrics.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal, Union

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import BaseModel, ConfigDict, Field, model_validator

from modeling.features.inception import InceptionNetwork
from storage.errors import T2VError

InputRange = Literal["uint8", "signed_unit"]
# Slack for decoders that overshoot [-1, 1] a little before clamping.
_SIGNED_UNIT_SLACK = 1e-2


class ValueRangeError(T2VError, ValueError):
    """A video's dtype or values do not match the declared input range."""


class _VideoProtocol(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    num_frames: int = Field(16, ge=1)
    input_range: InputRange = "uint8"
    # Random-init networks (no weights configured) are seeded so every worker agrees.
    init_seed: int = 0

    def video_uint8(self, video: np.ndarray) -> np.ndarray:
        """Checked (b, num_frames, h, w, 3) uint8 clip: the first ``num_frames`` frames."""
        return first_frames(to_uint8(video, self.input_range), self.num_frames)


class FVDProtocol(_VideoProtocol):
    """FVD with I3D logits; default StyleGAN-V ``fvd2048_16f``: 2048 real + 2048 fake, 16 frames, 224 px, [-1, 1]."""

    kind: Literal["fvd"] = "fvd"
    name: str = "fvd2048_16f"
    num_real: int = 2048
    num_fake: int = 2048
    size: int = 224
    feature_dim: int = 400

    def preprocess(self, video: np.ndarray) -> torch.Tensor:
        """uint8 (b, f, h, w, 3) -> I3D input (b, 3, f, size, size) in [-1, 1]."""
        frames = resize_frames(self.video_uint8(video), (self.size, self.size))
        return rearrange(frames / 127.5 - 1.0, "(b f) c h w -> b c f h w", f=self.num_frames)


class ISProtocol(_VideoProtocol):
    """Inception Score with the UCF-101 C3D; the default is TGANv2's protocol (``is_tganv2_c3d``).

    TGANv2 (``scripts/compute_inception_score.py``, ``tgan2/models/c3d/c3d_ucf101.py``) scores
    10 loops of 2,048 clips, i.e. ``num_samples`` = 20,480 in ``splits`` = 10 groups, and feeds
    C3D generator output x in [-1, 1] as BGR ``x * 128 + 128`` (``pixel_scale`` times the uint8
    value), resized to 112 with Chainer's bilinear ``resize_images`` (aligned corners), minus the
    per-pixel mean of ``mean2.npz`` cropped to ``[:, :, 8:120, 8:120]`` (``mean_file``). Without
    a mean file the per-channel ``mean`` (TGANv2's commented-out values) stands in: an
    approximation, fine for random-init networks, not for numbers to compare with papers.
    StyleGAN-V's ``isv2048_ucf`` scores 2,048 clips in 10 groups after shuffling them with
    ``RandomState(42)`` (``shuffle_seed``). The evaluation refuses to run with fewer clips than
    ``num_samples`` and scores the first ``num_samples`` when it has more. TGANv2 fed the
    generator's floats; [-1, 1] input here is quantised to uint8 first (see the module
    docstring), which moves C3D's input by at most half a level.
    """

    kind: Literal["is"] = "is"
    name: str = "is_tganv2_c3d"
    num_samples: int = Field(20480, ge=1)
    splits: int = Field(10, ge=1)
    shuffle_seed: int | None = None
    size: int = 112
    num_classes: int = 101
    channel_order: Literal["rgb", "bgr"] = "bgr"
    pixel_scale: float = 128 / 127.5
    align_corners: bool = True
    # Subtracted after scaling, in ``channel_order``.
    mean: tuple[float, float, float] = (90.25164795, 97.65701294, 101.4083252)
    mean_file: str | None = None

    @model_validator(mode="after")
    def _enough_samples_per_split(self) -> "ISProtocol":
        if self.splits > self.num_samples:
            raise ValueError(f"{self.splits} splits need at least {self.splits} samples, got num_samples={self.num_samples}")
        return self

    def preprocess(self, video: np.ndarray) -> torch.Tensor:
        """uint8 (b, f, h, w, 3) -> C3D input (b, 3, 16, 112, 112), scaled and mean-subtracted."""
        frames = resize_frames(self.video_uint8(video), (self.size, self.size), align_corners=self.align_corners)
        if self.channel_order == "bgr":
            frames = frames.flip(1)
        clips = rearrange(frames * self.pixel_scale, "(b f) c h w -> b c f h w", f=self.num_frames)
        if self.mean_file is None:
            return clips - torch.tensor(self.mean).view(1, 3, 1, 1, 1)
        return clips - per_pixel_mean(self.mean_file, self.num_frames, self.size)


class FIDProtocol(_VideoProtocol):
    """FID on frames with Inception-v3 pool features (2048-d) at 299x299, [-1, 1] input.

    ``network``: ``"pytorch_fid"`` is the FID network (pytorch-fid / TF FID, weights
    ``pt_inception-2015-12-05``), the one FID numbers are published with; ``"torchvision"``
    is torchvision's Inception-v3 for its ImageNet weights. Weights of the other network are refused.
    """

    kind: Literal["fid"] = "fid"
    name: str = "fid_frames"
    num_samples: int = 2048
    size: int = 299
    feature_dim: int = 2048
    network: InceptionNetwork = "pytorch_fid"

    def preprocess(self, video: np.ndarray) -> torch.Tensor:
        """uint8 (b, f, h, w, 3) -> Inception input (b * f, 3, 299, 299) in [-1, 1]."""
        return resize_frames(self.video_uint8(video), (self.size, self.size)) / 127.5 - 1.0


class CLIPSIMProtocol(_VideoProtocol):
    """CLIPSIM: mean over frames of cosine(frame, prompt) with CLIP ViT-B/32, on the 0..1 scale."""

    kind: Literal["clipsim"] = "clipsim"
    name: str = "clipsim_vitb32"
    clip_model: str = "ViT-B-32"
    # A tag resolved from open_clip's local cache, or a weights path; None -> random init.
    clip_pretrained: str | None = "openai"

    def preprocess(self, video: np.ndarray) -> np.ndarray:
        """(b, f, h, w, 3) -> uint8 frames (b * f, h, w, 3); CLIP resizes them itself, as open_clip does."""
        return rearrange(self.video_uint8(video), "b f h w c -> (b f) h w c")


class ShapesJudgeProtocol(_VideoProtocol):
    """The weight-free shapes judge (``shapes_judge``): colour, shape and direction accuracy against
    the words of each prompt, and frame-to-frame consistency, read off the first ``num_frames`` frames."""

    kind: Literal["shapes"] = "shapes"
    name: str = "shapes_judge"
    num_frames: int = Field(8, ge=2)  # a direction needs two frames at least


Protocol = Annotated[
    Union[FVDProtocol, ISProtocol, FIDProtocol, CLIPSIMProtocol, ShapesJudgeProtocol], Field(discriminator="kind")
]

PRESETS: dict[str, Protocol] = {
    "fvd2048_16f": FVDProtocol(),
    "fvd2048_128f": FVDProtocol(name="fvd2048_128f", num_frames=128),
    "is_tganv2_c3d": ISProtocol(),
    "isv2048_ucf": ISProtocol(name="isv2048_ucf", num_samples=2048, splits=10, shuffle_seed=42),
    "fid_frames": FIDProtocol(),
    "clipsim_vitb32": CLIPSIMProtocol(),
    "shapes_judge": ShapesJudgeProtocol(),
}


def check_value_range(video: np.ndarray, expected: InputRange) -> None:
    """Raise :class:`ValueRangeError` unless ``video`` is uint8 / floats in [-1, 1] as ``expected``."""
    is_float = np.issubdtype(video.dtype, np.floating)
    if expected == "uint8":
        if video.dtype == np.uint8:
            return
        hint = " (looks like [-1, 1] data: declare input_range='signed_unit')" if is_float and video.min() < 0 else ""
        raise ValueRangeError(f"expected uint8 video, got {video.dtype}{hint}")
    if not is_float:
        raise ValueRangeError(f"expected float video in [-1, 1], got {video.dtype} (declare input_range='uint8')")
    low, high = float(video.min()), float(video.max())
    if low < -1 - _SIGNED_UNIT_SLACK or high > 1 + _SIGNED_UNIT_SLACK:
        raise ValueRangeError(f"expected float video in [-1, 1], got values in [{low:.3g}, {high:.3g}]")


def to_uint8(video: np.ndarray, input_range: InputRange) -> np.ndarray:
    """Checked uint8 copy of ``video``; [-1, 1] floats are quantised the way saving to mp4 would."""
    check_value_range(video, input_range)
    if input_range == "uint8":
        return video
    return np.round((np.clip(video, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def first_frames(video: np.ndarray, num_frames: int) -> np.ndarray:
    """The first ``num_frames`` frames of a (b, f, h, w, 3) batch; fewer is an error, not padding."""
    if video.ndim != 5 or video.shape[-1] != 3:
        raise ValueError(f"expected (b, frames, h, w, 3) RGB videos, got shape {video.shape}")
    if video.shape[1] < num_frames:
        raise ValueError(f"protocol needs {num_frames} frames, video has {video.shape[1]}")
    return video[:, :num_frames]


def resize_frames(video: np.ndarray, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """uint8 (b, f, h, w, 3) -> float (b * f, 3, *size) on the 0..255 scale.

    Bilinear without antialiasing, like the TF/PyTorch FVD reference code (the
    half-pixel convention follows PyTorch's ``align_corners=False``); Chainer's
    ``resize_images``, which TGANv2 used, maps corners to corners (``align_corners=True``).
    """
    frames = rearrange(torch.from_numpy(np.ascontiguousarray(video)), "b f h w c -> (b f) c h w").float()
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=size, mode="bilinear", align_corners=align_corners)


class MeanFileError(T2VError):
    """A per-pixel mean file that cannot be used."""


# TGANv2 crops its 128-row mean to the 112x112 input at this fixed offset (rows and columns).
_MEAN_CROP = 8


@lru_cache(maxsize=4)
def per_pixel_mean(path: str, num_frames: int, size: int) -> torch.Tensor:
    """TGANv2's per-pixel mean (``mean2.npz``, key ``mean``, (3, frames, h, w)) cropped as TGANv2 does."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            mean = archive["mean"]
    except (OSError, KeyError, ValueError) as error:
        raise MeanFileError(f"{path}: not a readable .npz with a 'mean' array ({error})") from error
    end = _MEAN_CROP + size
    if mean.ndim != 4 or mean.shape[0] != 3 or mean.shape[1] != num_frames or min(mean.shape[2:]) < end:
        raise MeanFileError(
            f"{path}: mean of shape {mean.shape}; expected (3, {num_frames}, h, w) with h, w >= {end}"
        )
    return torch.from_numpy(np.ascontiguousarray(mean[:, :, _MEAN_CROP:end, _MEAN_CROP:end], np.float32))
