"""Split: shot detection on decoded frames, then clip-length rules.

PySceneDetect's detectors run on frames we decoded ourselves (front to back, with PyAV), so a
video is read once and the frames can be reused by later stages. A cut at frame ``c`` means a new shot starts at
``c``; clips are half-open ``[start, end)`` frame ranges, so no clip holds a frame of the next shot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import cv2
import numpy as np
from scenedetect import FrameTimecode
from scenedetect.detector import SceneDetector
from scenedetect.detectors import AdaptiveDetector, ContentDetector

from pipelines.curate.config import SplitConfig
from pipelines.curate.frames import rgb_to_bgr
from storage.media import iter_frames, probe_video

FrameRange = tuple[int, int]


def make_detector(config: SplitConfig) -> SceneDetector:
    # float seconds, as the scenedetect CLI passes its 0.6 s default
    min_scene_len = float(config.min_scene_seconds)
    if config.detector == "adaptive":
        return AdaptiveDetector(adaptive_threshold=config.adaptive_threshold, min_scene_len=min_scene_len)
    return ContentDetector(threshold=config.threshold, min_scene_len=min_scene_len)


def detection_size(width: int, height: int, detect_width: int) -> tuple[int, int]:
    """Frame size the detector sees: the scenedetect CLI's auto-downscale to about ``detect_width``."""
    if width <= detect_width:
        return width, height
    factor = width / detect_width
    return max(1, round(width / factor)), max(1, round(height / factor))


class ShotDetector:
    """Feeds RGB frames, in order and in any number of chunks, to a scenedetect detector."""

    def __init__(self, config: SplitConfig, fps: float):
        self.config = config
        self.fps = float(fps)  # scenedetect rejects an int rate
        self._detector = make_detector(config)
        self._next_frame = 0
        self._cuts: list[int] = []

    def feed(self, frames: Iterable[np.ndarray]) -> list[int]:
        """Process frames; return the cuts found while doing so (callers that stream use them)."""
        found: list[int] = []
        for frame in frames:
            frame = self._downscale(frame)
            timecode = FrameTimecode(self._next_frame, fps=self.fps)
            found += [cut.frame_num for cut in self._detector.process_frame(timecode, rgb_to_bgr(frame))]
            self._next_frame += 1
        self._cuts += found
        return [c for c in found if c > 0]

    def finish(self) -> list[int]:
        """Cut frames (each the first frame of a new shot), sorted, excluding frame 0."""
        if self._next_frame:
            last = FrameTimecode(self._next_frame - 1, fps=self.fps)
            self._cuts += [cut.frame_num for cut in self._detector.post_process(last)]
        return sorted({c for c in self._cuts if 0 < c < self._next_frame})

    def _downscale(self, frame: np.ndarray) -> np.ndarray:
        height, width = frame.shape[:2]
        size = detection_size(width, height, self.config.detect_width)
        if size == (width, height):
            return frame
        return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)


def shot_ranges(cuts: Iterable[int], num_frames: int) -> list[FrameRange]:
    bounds = [0, *sorted(set(cuts)), num_frames]
    return [(start, end) for start, end in zip(bounds[:-1], bounds[1:]) if end > start]


def clip_ranges(shots: Iterable[FrameRange], fps: float, config: SplitConfig) -> list[FrameRange]:
    """Drop shots shorter than the minimum; cut shots longer than the maximum into ~piece-long clips."""
    min_len = math.ceil(config.min_clip_seconds * fps - 1e-6)
    max_len = math.floor(config.max_clip_seconds * fps + 1e-6)
    piece_len = config.piece_seconds * fps
    clips: list[FrameRange] = []
    for start, end in shots:
        length = end - start
        if length < min_len:
            continue
        if length <= max_len:
            clips.append((start, end))
            continue
        # equal pieces close to piece_len: no short leftover is wasted, none exceeds the maximum
        pieces = max(math.ceil(length / max_len), round(length / piece_len))
        while pieces > 1 and length / pieces < min_len:
            pieces -= 1
        bounds = np.round(np.linspace(start, end, pieces + 1)).astype(int)
        clips += [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    return clips


@dataclass(frozen=True)
class SplitResult:
    fps: float
    num_frames: int
    cuts: list[int] = field(default_factory=list)
    clips: list[FrameRange] = field(default_factory=list)

    def clip_times(self) -> list[tuple[float, float]]:
        """(start, end) seconds of each clip."""
        return [(start / self.fps, end / self.fps) for start, end in self.clips]


def split_frames(frames: np.ndarray, fps: float, config: SplitConfig) -> SplitResult:
    """Split already-decoded uint8 RGB frames ``(n, h, w, 3)`` of one video."""
    detector = ShotDetector(config, fps)
    detector.feed(frames)
    return _result(detector, len(frames))


def split_video(src, config: SplitConfig) -> SplitResult:
    """Decode a video at detection size in chunks (bounded memory) and split it.

    Raises :class:`storage.media.MediaError` for files that cannot be read, for quarantine.
    """
    info = probe_video(src)
    size = detection_size(info.width, info.height, config.detect_width)
    decode_size = None if size == (info.width, info.height) else size
    detector = ShotDetector(config, info.fps)
    for frames in iter_frames(src, size=decode_size, chunk_frames=config.chunk_frames):
        detector.feed(frames)
    return _result(detector, info.num_frames)


def _result(detector: ShotDetector, num_frames: int) -> SplitResult:
    cuts = detector.finish()
    clips = clip_ranges(shot_ranges(cuts, num_frames), detector.fps, detector.config)
    return SplitResult(fps=detector.fps, num_frames=num_frames, cuts=cuts, clips=clips)
