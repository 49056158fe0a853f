"""Filter stages: each scores clips into its columns, and ``keep`` turns a row's scores into a decision.

The model stages run in the annotate actors (:mod:`pipelines.curate.stage`): the model loads once
in ``setup`` and ``process`` scores a numpy batch (``keyframes`` column, see
:mod:`pipelines.curate.frames`). A model stage without configured weights is *skipped*: it writes
NaN scores, its ``keep`` keeps the row, and ``skipped_reason`` says why in plain words so the
funnel can report it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np
import pyarrow as pa

from pipelines.curate.config import AestheticConfig, NSFWConfig, SizeConfig, ToxicityConfig, WatermarkConfig
from pipelines.curate.frames import batch_length, iter_frame_stacks, rgb_to_bgr, select_keyframes
from pipelines.curate.stage import Stage, score


class SizeFilter(Stage):
    """Judges the source media from the cut's columns: a pseudo-video's duration is made up, so
    images are judged by size alone."""

    name = block = "size"
    config_class = SizeConfig
    runs_in = "select"

    def keep(self, row: Mapping[str, Any]) -> str | None:
        width, height = int(row["source_width"]), int(row["source_height"])
        if min(width, height) < self.config.min_short_side:
            return "too_small"
        if max(width, height) / min(width, height) > self.config.max_aspect_ratio:
            return "bad_aspect_ratio"
        duration = None if row["pseudo"] else score(row, "duration")
        if duration is not None and duration < self.config.min_seconds:
            return "too_short"
        if duration is not None and self.config.max_seconds is not None and duration > self.config.max_seconds:
            return "too_long"
        return None


class ScoreStage(Stage):
    """Base of the model filters: NaN scores when skipped, score columns as float64 arrays."""

    runs_in = "annotate"
    reads_keyframes = True

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = batch_length(batch)
        if self.skipped_reason is not None:
            return {**batch, **{column: np.full(n, np.nan) for column, _ in self.columns}}
        return {**batch, **{column: np.asarray(values, dtype=np.float64).reshape(n) for column, values in self.score(batch).items()}}

    def score(self, batch: dict[str, np.ndarray]) -> dict[str, list[float]]:
        raise NotImplementedError


def _scores(*names: str) -> tuple[tuple[str, pa.DataType], ...]:
    return tuple((name, pa.float64()) for name in names)


class NSFWFilter(ScoreStage):
    """``nsfw_score``: max exposed-class probability of nudenet over the keyframes (0 when none found);
    ``nsfw_clip_score`` from the CLIP-embedding head when its weights are configured, else NaN."""

    name = block = "nsfw"
    columns = _scores("nsfw_score", "nsfw_clip_score")
    config_class = NSFWConfig

    @classmethod
    def skip_reason(cls, config: NSFWConfig) -> str | None:
        return None if config.enabled else "NSFW filter disabled in config"

    def setup(self) -> None:
        self.detector = _single_threaded_nudenet()
        self.exposed = set(self.config.exposed_classes)
        self.head = None
        if self.config.clip_head_path is not None:
            from modeling.scorers import ClipImageEmbedder, ClipNSFWHead

            self.embedder = ClipImageEmbedder(self.config.clip_model, self.config.clip_model_path)
            self.head = ClipNSFWHead.from_weights(self.config.clip_head_path).to(self.embedder.device)

    @property
    def head_skipped_reason(self) -> str | None:
        return self.head_skip_reason(self.config)

    def skipped(self) -> dict[str, str]:
        head = self.head_skipped_reason
        return {**super().skipped(), **({"nsfw_clip_head": head} if head else {})}

    def keep(self, row: Mapping[str, Any]) -> str | None:
        detector, head = score(row, "nsfw_score"), score(row, "nsfw_clip_score")
        if detector is not None and detector > self.config.threshold:
            return "nsfw"
        if head is not None and head > self.config.clip_head_threshold:
            return "nsfw"
        return None

    @classmethod
    def head_skip_reason(cls, config: NSFWConfig) -> str | None:
        if not config.enabled or config.clip_head_path is not None:
            return cls.skip_reason(config)
        return "CLIP NSFW head not configured (nsfw.clip_head_path); nudenet alone decides"

    def score(self, batch: dict[str, np.ndarray]) -> dict[str, list[float]]:
        stacks = _keyframe_stacks(batch, self.config.num_keyframes)
        images = [rgb_to_bgr(frame) for stack in stacks for frame in stack]
        detections = self.detector.detect_batch(images, batch_size=max(1, len(images)))
        per_image = [max((d["score"] for d in found if d["class"] in self.exposed), default=0.0) for found in detections]
        detector_scores = _max_per_row(per_image, [len(s) for s in stacks])
        head_scores = self._head_scores(stacks) if self.head is not None else [math.nan] * len(stacks)
        return {"nsfw_score": detector_scores, "nsfw_clip_score": head_scores}

    def _head_scores(self, stacks: list[np.ndarray]) -> list[float]:
        import torch

        embeddings = self.embedder(np.concatenate(stacks))
        with torch.inference_mode():
            probabilities = self.head(torch.from_numpy(embeddings).to(self.embedder.device)).float().cpu().numpy()
        return _max_per_row(list(probabilities), [len(s) for s in stacks])


def _single_threaded_nudenet():
    """nudenet's detector on a one-thread ONNX session: Ray already runs one actor per CPU, and the
    default pool (a spinning thread per core) fights the cut tasks and other actors for those cores."""
    import onnxruntime
    from nudenet import NudeDetector

    detector = NudeDetector()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    model_path = detector.onnx_session._model_path  # the model nudenet ships
    session = onnxruntime.InferenceSession(model_path, options, providers=detector.onnx_session.get_providers())
    detector.onnx_session = CandidateAnchors(session)
    return detector


class CandidateAnchors:
    """An ONNX session for nudenet that returns only the anchors its postprocessing can keep.

    nudenet loops in Python over all 2,100 anchors of every image and keeps those whose best class
    scores at least 0.2, which was a third of the NSFW stage's time. The anchors no image of the batch
    scores 0.2 on are dropped here in one vectorised step; the order of the rest is kept, so the
    detections (and NMS among them) are the same.
    """

    MIN_SCORE = 0.2  # nudenet's own cut-off

    def __init__(self, session):
        self._session = session

    def get_inputs(self):
        return self._session.get_inputs()

    def run(self, output_names, feeds):
        boxes, *rest = self._session.run(output_names, feeds)  # (images, 4 + classes, anchors)
        passing = (boxes[:, 4:, :].max(axis=1) >= self.MIN_SCORE).any(axis=0)
        keep = np.flatnonzero(passing)
        if len(keep) < 2:  # nudenet squeezes the output: a single anchor would lose its axis
            keep = np.sort(np.concatenate([keep, np.flatnonzero(~passing)[: 2 - len(keep)]]))
        return [boxes[:, :, keep], *rest]


class ToxicityFilter(ScoreStage):
    """``toxicity_score``: max offensive-text probability (alt-profanity-check) over the text columns."""

    name = block = "toxicity"
    columns = _scores("toxicity_score")
    config_class = ToxicityConfig
    reads_keyframes = False

    @classmethod
    def skip_reason(cls, config: ToxicityConfig) -> str | None:
        return None if config.enabled else "toxic-text filter disabled in config"

    def setup(self) -> None:
        # The model loads with the first text to score: importing it (sklearn) is most of an annotate
        # actor's start-up, and uncaptioned, unlabelled videos bring no text at all.
        self._predict_prob: Callable[[list[str]], np.ndarray] | None = None

    def score(self, batch: dict[str, np.ndarray]) -> dict[str, list[float]]:
        return {"toxicity_score": self.score_texts(_row_texts(batch, self.config.text_columns))}

    def score_texts(self, texts_per_row: list[list[str]]) -> list[float]:
        flat = [text for texts in texts_per_row for text in texts]
        if flat and self._predict_prob is None:
            from profanity_check import predict_prob

            self._predict_prob = predict_prob
        probabilities = list(self._predict_prob(flat)) if flat else []
        # a row without text has nothing offensive in it
        return _max_per_row(probabilities, [len(t) for t in texts_per_row], empty=0.0)

    def keep(self, row: Mapping[str, Any]) -> str | None:
        value = score(row, "toxicity_score")
        return "toxic_text" if value is not None and value > self.config.threshold else None


def _row_texts(batch: dict[str, np.ndarray], columns: tuple[str, ...]) -> list[list[str]]:
    present = [batch[c] for c in columns if c in batch]
    rows = zip(*present) if present else ([] for _ in range(batch_length(batch)))
    return [[str(v) for v in values if isinstance(v, str) and v.strip()] for values in rows]


class WatermarkFilter(ScoreStage):
    """``watermark_score``: max P(watermark) of LAION's classifier over the keyframes."""

    name = block = "watermark"
    columns = _scores("watermark_score")
    config_class = WatermarkConfig

    @classmethod
    def skip_reason(cls, config: WatermarkConfig) -> str | None:
        if config.weights_path is None:
            return "watermark filter skipped: no weights configured (watermark.weights_path)"
        return None

    def setup(self) -> None:
        from modeling.scorers import default_device, load_watermark_model

        self.model = load_watermark_model(self.config.weights_path).to(default_device())

    def score(self, batch: dict[str, np.ndarray]) -> dict[str, list[float]]:
        from modeling.scorers import watermark_probability

        stacks = _keyframe_stacks(batch, self.config.num_keyframes)
        probabilities = [watermark_probability(self.model, stack, self.config.batch_size) for stack in stacks]
        return {"watermark_score": [float(p.max()) for p in probabilities]}

    def keep(self, row: Mapping[str, Any]) -> str | None:
        value = score(row, "watermark_score")
        return "watermark" if value is not None and value > self.config.threshold else None


class AestheticFilter(ScoreStage):
    """``aesthetic_score``: mean LAION aesthetic score over the keyframes' CLIP embeddings."""

    name = block = "aesthetic"
    columns = _scores("aesthetic_score")
    config_class = AestheticConfig

    @classmethod
    def skip_reason(cls, config: AestheticConfig) -> str | None:
        if config.weights_path is None:
            return "aesthetic filter skipped: no MLP weights configured (aesthetic.weights_path)"
        if config.clip_model_path is None and not config.clip_model.startswith("local-dir:"):
            return "aesthetic filter skipped: no CLIP weights configured (aesthetic.clip_model_path)"
        return None

    def setup(self) -> None:
        from modeling.scorers import AestheticMLP, ClipImageEmbedder

        self.embedder = ClipImageEmbedder(self.config.clip_model, self.config.clip_model_path)
        self.mlp = AestheticMLP.from_weights(self.config.weights_path).to(self.embedder.device)

    def score(self, batch: dict[str, np.ndarray]) -> dict[str, list[float]]:
        import torch

        stacks = _keyframe_stacks(batch, self.config.num_keyframes)
        embeddings = self.embedder(np.concatenate(stacks), self.config.batch_size)
        with torch.inference_mode():
            scores = self.mlp(torch.from_numpy(embeddings).to(self.embedder.device)).float().cpu().numpy()
        counts = np.cumsum([0] + [len(s) for s in stacks])
        return {"aesthetic_score": [float(scores[a:b].mean()) for a, b in zip(counts[:-1], counts[1:])]}

    def keep(self, row: Mapping[str, Any]) -> str | None:
        value = score(row, "aesthetic_score")
        return "low_aesthetic" if value is not None and value < self.config.min_score else None


def _keyframe_stacks(batch: dict[str, np.ndarray], k: int) -> list[np.ndarray]:
    return [select_keyframes(frames, k) for frames in iter_frame_stacks(batch)]


def _max_per_row(values: list[float], counts: list[int], empty: float = math.nan) -> list[float]:
    """Split a flat list of per-item values back into rows and take each row's max."""
    out, start = [], 0
    for count in counts:
        chunk = values[start : start + count]
        out.append(float(max(chunk)) if chunk else empty)
        start += count
    return out
