"""Batch feature extractors for Ray Data ``map_batches(batch_format="numpy")``.

Each extractor loads its network once in ``__init__`` (an actor in an
``ActorPoolStrategy`` pool) and maps ``{"video": uint8 (b, f, h, w, 3), ...}``
to the same columns minus ``video`` plus:

* ``features``: I3D logits (b, 400) for FVD, C3D class probabilities (b, 101)
  for IS, Inception pool features (b, f, 2048) for FID on frames;
* ``clipsim`` (b,): per-video CLIPSIM, for which a ``prompt`` column is needed;
* ``colour_correct``, ``shape_correct``, ``direction_correct`` (b,): 1 or 0 per clip as the
  weight-free shapes judge reads it against its ``prompt`` (NaN where the prompt names no such
  word), and ``consistency`` (b,);
* ``random_init`` (b,): True when no weights were given, so reports can label
  such metrics as computed with random-init networks.

Random-init networks are seeded from the protocol, so every worker computes the
same features. Networks run in float32 on every device: FVD/FID are sensitive
to feature precision and published numbers were computed in float32.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from einops import rearrange
from torch import nn

from modeling.features.c3d import C3D
from modeling.features.checkpoint import PathLike, seeded_init
from modeling.features.i3d import I3D
from modeling.features.inception import inception_features, load_inception_features
from pipelines.evaluate.metrics import clipsim
from pipelines.evaluate.protocols import CLIPSIMProtocol, FIDProtocol, FVDProtocol, ISProtocol, ShapesJudgeProtocol
from pipelines.evaluate.shapes_judge import ATTRIBUTES, judge_clip

Batch = dict[str, np.ndarray]
VideoProtocol = FVDProtocol | ISProtocol | FIDProtocol


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _network_loaders(protocol: VideoProtocol) -> tuple[Callable[[], nn.Module], Callable, Callable | None]:
    """(random-init builder, single-file loader, directory loader or None) of the protocol's network."""
    if isinstance(protocol, FIDProtocol):
        return partial(inception_features, protocol.network), partial(load_inception_features, network=protocol.network), None
    if isinstance(protocol, ISProtocol):
        return C3D, C3D.from_checkpoint, C3D.from_pretrained
    return I3D, I3D.from_checkpoint, I3D.from_pretrained


def load_network(protocol: VideoProtocol, weights_path: PathLike | None) -> nn.Module:
    """The protocol's feature network in eval mode: weights from a file or directory, else seeded random init."""
    build, from_file, from_dir = _network_loaders(protocol)
    if weights_path is None:
        return seeded_init(build, protocol.init_seed).eval()
    path = Path(weights_path)
    if path.is_dir():
        if from_dir is None:
            raise ValueError(f"{path}: {protocol.kind} weights must be a single file")
        return from_dir(path).eval()
    return from_file(path).eval()


class VideoFeatureExtractor:
    """FVD / IS / FID features for batches of videos (see the module docstring)."""

    def __init__(self, protocol: VideoProtocol, weights_path: PathLike | None = None, device: str | None = None):
        self.protocol = protocol
        self.device = torch.device(device) if device else default_device()
        self.network = load_network(protocol, weights_path).to(self.device)
        self.random_init = weights_path is None

    @torch.no_grad()
    def __call__(self, batch: Batch) -> Batch:
        videos = batch["video"]
        if videos.dtype == object:  # Ray Data's form for videos of different sizes
            inputs = torch.cat([self.protocol.preprocess(video[None]) for video in videos])
        else:
            inputs = self.protocol.preprocess(videos)
        outputs = self.network(inputs.to(self.device)).double().cpu()
        return _with_outputs(batch, features=self._finish(outputs, len(videos)), random_init=self.random_init)

    def _finish(self, outputs: torch.Tensor, num_videos: int) -> np.ndarray:
        if isinstance(self.protocol, ISProtocol):
            return outputs.softmax(dim=-1).numpy()
        if isinstance(self.protocol, FIDProtocol):
            return rearrange(outputs, "(b f) d -> b f d", b=num_videos).numpy()
        return outputs.numpy()


class ClipSimScorer:
    """Per-video CLIPSIM for batches with ``video`` and ``prompt`` columns.

    ``weights_path``: an open_clip ``local-dir`` folder or a weights file for
    ``protocol.clip_model``; None falls back to ``protocol.clip_pretrained``.
    """

    def __init__(self, protocol: CLIPSIMProtocol, weights_path: PathLike | None = None, device: str | None = None):
        self.protocol = protocol
        self.device = torch.device(device) if device else default_device()
        if weights_path is not None and Path(weights_path).is_dir():
            model_name, pretrained = weights_path, None
        else:
            model_name = protocol.clip_model
            pretrained = weights_path if weights_path is not None else protocol.clip_pretrained
        # open_clip takes seconds to import; only CLIPSIM workers pay for it.
        from modeling.features.clip import load_clip

        self.encoder = seeded_init(lambda: load_clip(model_name, pretrained, device=self.device), protocol.init_seed)
        self.random_init = self.encoder.random_init

    def __call__(self, batch: Batch) -> Batch:
        text = self.encoder.encode_text([str(prompt) for prompt in batch["prompt"]]).cpu().numpy()
        scores = [
            clipsim(self.encoder.encode_images(self.protocol.preprocess(video[None])).cpu().numpy(), text[i])
            for i, video in enumerate(batch["video"])
        ]
        return _with_outputs(batch, clipsim=np.asarray(scores, np.float64), random_init=self.random_init)


class ShapesJudgeScorer:
    """Per-clip verdicts of the shapes judge for batches with ``video`` and ``prompt`` columns; no network."""

    def __init__(self, protocol: ShapesJudgeProtocol, weights_path: PathLike | None = None):
        if weights_path is not None:
            raise ValueError("the shapes judge has no weights to load")
        self.protocol = protocol

    def __call__(self, batch: Batch) -> Batch:
        judgements = [judge_clip(str(prompt), self.protocol.video_uint8(video[None])[0])
                      for prompt, video in zip(batch["prompt"], batch["video"])]
        verdicts = {f"{attribute}_correct": np.asarray(
            [np.nan if getattr(j, attribute) is None else float(getattr(j, attribute)) for j in judgements])
            for attribute in ATTRIBUTES}
        consistency = np.asarray([j.consistency for j in judgements], np.float64)
        return _with_outputs(batch, random_init=False, **verdicts, consistency=consistency)


def extractor_class(protocol: VideoProtocol | CLIPSIMProtocol | ShapesJudgeProtocol) -> type:
    """The ``map_batches`` class for ``protocol`` (construct it with ``protocol`` and ``weights_path``)."""
    if isinstance(protocol, ShapesJudgeProtocol):
        return ShapesJudgeScorer
    return ClipSimScorer if isinstance(protocol, CLIPSIMProtocol) else VideoFeatureExtractor


def _with_outputs(batch: Batch, random_init: bool, **outputs: np.ndarray) -> Batch:
    """Input columns except the (large) ``video``, plus the outputs and the random-init flag."""
    num_rows = len(batch["video"])
    kept = {name: column for name, column in batch.items() if name != "video"}
    return {**kept, **outputs, "random_init": np.full(num_rows, random_init)}
