"""Configuration of every curation stage, one pydantic model per stage.

Defaults follow the papers and the public pipelines they cite (REFERENCE.md section 1):
ContentDetector threshold 27, clips 2-10 s with long shots cut into ~5 s pieces, watermark
p > 0.5 dropped (Make-A-Video), static clips (motion < 0.001) dropped, LAION aesthetic 4.5+.
Every block forbids unknown keys so a typo in curate.yaml fails loudly instead of being ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


X264Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]


class StageConfig(BaseModel):
    """A stage's settings: the fields that change what it computes, and ``keep_fields`` that only
    decide which rows are kept. Resume keys hash the compute fields alone, so a threshold change
    re-applies the rules to stored scores and recomputes nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    keep_fields: ClassVar[frozenset[str]] = frozenset()

    def compute_fields(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude=set(self.keep_fields))


class SplitConfig(StageConfig):
    detector: Literal["content", "adaptive"] = "content"
    threshold: float = Field(27.0, gt=0, description="ContentDetector score that makes a cut")
    adaptive_threshold: float = Field(3.0, gt=0, description="AdaptiveDetector ratio that makes a cut")
    min_scene_seconds: float = Field(0.6, ge=0, description="no two cuts closer than this (the scenedetect CLI default)")
    detect_width: int = Field(256, ge=16, description="frames wider than this are downscaled for detection, as the scenedetect CLI does")
    min_clip_seconds: float = Field(2.0, gt=0)
    max_clip_seconds: float = Field(10.0, gt=0)
    piece_seconds: float = Field(5.0, gt=0, description="shots longer than max_clip_seconds are cut into pieces of about this length")
    chunk_frames: int = Field(32, ge=1, description="frames decoded at once when splitting a file")

    @model_validator(mode="after")
    def _lengths_ordered(self) -> "SplitConfig":
        if not self.min_clip_seconds <= self.piece_seconds <= self.max_clip_seconds:
            raise ValueError("need min_clip_seconds <= piece_seconds <= max_clip_seconds")
        return self


class TranscodeConfig(StageConfig):
    fps: float = Field(24.0, gt=0)
    size: tuple[int, int] = Field((512, 320), description="(width, height) box the frames fit into")
    center_crop: bool = Field(False, description="fill the box and crop the overflow instead of fitting inside it")
    crf: int = Field(20, ge=0, le=51)
    # Training clips are written once and decoded every epoch: superfast encodes in about half of
    # veryfast's CPU time, decodes as fast, and at the same crf gives ~1/3 larger files of equal or
    # better PSNR. Pick veryfast (PySceneDetect's default) or slower when storage costs more than CPU.
    preset: X264Preset = Field("superfast", description="x264 speed/size trade of the stored clips")

    @model_validator(mode="after")
    def _even_box(self) -> "TranscodeConfig":
        if min(self.size) < 2:
            raise ValueError("size must be at least 2x2")
        return self


class KeyframeConfig(StageConfig):
    num_keyframes: int = Field(3, ge=1, description="frames per clip the image models look at")


class NSFWConfig(KeyframeConfig):
    keep_fields = frozenset({"threshold", "clip_head_threshold"})
    enabled: bool = True
    threshold: float = Field(0.5, ge=0, le=1, description="drop when the max exposed-class probability exceeds this")
    exposed_classes: tuple[str, ...] = (
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    )
    clip_head_path: Path | None = Field(None, description="safetensors of the CLIP-embedding NSFW head; needs clip_model_path")
    clip_model: str = "ViT-L-14"
    clip_model_path: Path | None = None
    clip_head_threshold: float = Field(0.5, ge=0, le=1)


class ToxicityConfig(StageConfig):
    keep_fields = frozenset({"threshold"})
    enabled: bool = True
    threshold: float = Field(0.5, ge=0, le=1, description="drop when the offensive-text probability exceeds this")
    text_columns: tuple[str, ...] = ("caption", "label")


class WatermarkConfig(KeyframeConfig):
    keep_fields = frozenset({"threshold"})
    weights_path: Path | None = Field(None, description="LAION watermark_model_v1.pt or a safetensors copy")
    threshold: float = Field(0.5, ge=0, le=1, description="Make-A-Video drops watermark probability > 0.5")
    batch_size: int = Field(16, ge=1)


class AestheticConfig(KeyframeConfig):
    keep_fields = frozenset({"min_score"})
    weights_path: Path | None = Field(None, description="LAION aesthetic MLP (.pth state_dict or safetensors)")
    clip_model: str = "ViT-L-14"
    clip_model_path: Path | None = Field(None, description="open_clip checkpoint file, or a local-dir: model folder")
    min_score: float = Field(4.5, description="LAION-Aesthetics 4.5+ subset")
    batch_size: int = Field(16, ge=1)


class MotionConfig(StageConfig):
    keep_fields = frozenset({"min_score", "max_score"})
    method: Literal["frame_diff", "flow"] = "frame_diff"
    sample_fps: float = Field(4.0, gt=0, description="frames compared this far apart, so scores do not depend on the source fps")
    short_side: int = Field(64, ge=8, description="grayscale frames are downscaled to this short side")
    min_score: float = Field(0.001, ge=0, description="below: static clip")
    # frame_diff of pure noise is ~0.22 and of fast real footage ~0.1; flow scores run ~5x lower
    max_score: float = Field(0.2, gt=0, description="above: jittery / shaking clip (calibrated for frame_diff)")


class BlurConfig(StageConfig):
    keep_fields = frozenset({"min_score"})
    num_frames: int = Field(3, ge=1, description="frames per clip scored, at the centres of equal segments")
    # Laplacian variance grows with resolution and edge density, so no one threshold suits every
    # dataset: by default every clip is scored (about a millisecond on frames already in memory) and
    # none is dropped; pick min_score from the blur_score histogram, and a change recomputes nothing.
    min_score: float = Field(0.0, ge=0, description="below: blurry clip (median Laplacian variance of the scored frames)")


class SizeConfig(StageConfig):
    keep_fields = frozenset({"min_short_side", "min_seconds", "max_seconds", "max_aspect_ratio"})
    min_short_side: int = Field(128, ge=1)
    min_seconds: float = Field(2.0, ge=0, description="videos only; images have no duration")
    max_seconds: float | None = Field(None, gt=0)
    max_aspect_ratio: float = Field(2.5, ge=1, description="long side / short side")


class CaptionConfig(StageConfig):
    template: str = Field("a video of {label}.", description="label -> caption for labels that have no per-class sentence; {label} is the label in words")
    templates: dict[str, str] = Field(default_factory=dict, description="per-class caption, overrides the template")
    llm_path: str | None = Field(None, description="transformers causal LM (local path or hub id) that paraphrases label captions")
    llm_prompt: str = "Describe a short video of this action in one sentence.\nAction: {caption}\nVideo:"
    llm_max_new_tokens: int = Field(24, ge=1)
    llm_do_sample: bool = True
    llm_temperature: float = Field(0.8, gt=0)
    vlm_path: str | None = Field(None, description="transformers image-to-text model for clips without captions")
    vlm_prompt: str | None = Field(None, description="text prompt for image-text-to-text models")
    vlm_max_new_tokens: int = Field(24, ge=1)
    num_keyframes: int = Field(3, ge=1, description="frames per clip the VLM captions")
    batch_size: int = Field(8, ge=1)
    seed: int = 0


class PseudoVideoConfig(StageConfig):
    num_frames: int = Field(16, ge=2)
    fps: float = Field(8.0, gt=0)
    size: tuple[int, int] = Field((256, 256), description="(width, height) of the output clip")
    zoom_range: tuple[float, float] = Field((1.0, 1.3), description="1 = largest crop of the output aspect that fits the image")
    pan_speed: float = Field(0.15, ge=0, description="max pan, in fractions of the image size per second")
    seed: int = 0

    @model_validator(mode="after")
    def _zoom_valid(self) -> "PseudoVideoConfig":
        low, high = self.zoom_range
        if not 1.0 <= low <= high:
            raise ValueError("zoom_range must satisfy 1 <= low <= high")
        return self


class DedupConfig(KeyframeConfig):
    keep_fields = frozenset({"max_hamming", "min_cosine"})
    method: Literal["phash", "dhash", "clip"] = "phash"
    max_hamming: int = Field(6, ge=0, le=64, description="near-duplicate when the mean keyframe Hamming distance is at most this")
    clip_model: str = "ViT-L-14"
    clip_model_path: Path | None = None
    min_cosine: float = Field(0.95, ge=-1, le=1, description="near-duplicate when CLIP cosine similarity is at least this")


class CurateConfig(StageConfig):
    split: SplitConfig = SplitConfig()
    transcode: TranscodeConfig = TranscodeConfig()
    size: SizeConfig = SizeConfig()
    motion: MotionConfig = MotionConfig()
    blur: BlurConfig = BlurConfig()
    nsfw: NSFWConfig = NSFWConfig()
    toxicity: ToxicityConfig = ToxicityConfig()
    watermark: WatermarkConfig = WatermarkConfig()
    aesthetic: AestheticConfig = AestheticConfig()
    caption: CaptionConfig = CaptionConfig()
    pseudo_video: PseudoVideoConfig = PseudoVideoConfig()
    dedup: DedupConfig = DedupConfig()

    @classmethod
    def from_yaml(cls, path: str | Path) -> "CurateConfig":
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.model_validate(data)
