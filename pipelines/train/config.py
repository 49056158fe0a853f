"""Training configuration: one pydantic model per stage plus what every stage shares.

Defaults follow REFERENCE.md: 16 frames at a random fps in 1..30 with a high-to-low
fps curriculum (Make-A-Video), frozen spatial layers, AdamW lr 1e-4, grad clip 1.0,
EMA of the trainable weights. Every block forbids unknown keys, so a typo in
train.yaml fails loudly.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

STAGES: tuple[str, ...] = ("base", "interpolation", "superres", "vae_decoder", "prior")
PredictionType = Literal["epsilon", "v_prediction"]
# Spelled out instead of imported from modeling, so loading settings does not import diffusers;
# a test keeps them equal to modeling.inflation.VARIANTS and modeling.freeze.FreezePolicy.
Variant = Literal["make_a_video", "videoldm", "lavie"]
FreezePolicy = Literal["spatial_frozen", "temporal_and_attention", "all"]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OptimConfig(_Block):
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(0, ge=0, description="linear warmup, then cosine decay to 0 at the last step")
    grad_clip: float = Field(1.0, gt=0)
    ema_decay: float | None = Field(0.999, ge=0, lt=1, description="EMA of trainable weights; null disables it")


# Ray renders a row filter as pyarrow's expression text, which the Lance scan parses as SQL:
# a double quote, backslash or control character would end or garble its string literals.
_UNQUOTABLE = re.compile(r'["\\\x00-\x1f]')


class RowSelection(_Block):
    """Which catalog rows a stage trains on, as one filter pushed down to the Lance scan (nothing is
    copied). Every field set must hold; the values of one field are alternatives."""

    sources: list[str] | None = Field(
        None, min_length=1,
        description="absolute paths or URIs of source folders or files, as ingest resolved them: a row is "
        "kept when its source_uri is one of them or lies under one (a folder, or a shard's #members)",
    )
    labels: list[str] | None = Field(None, min_length=1, description="exact class labels (unlabelled rows drop out)")
    pseudo: bool | None = Field(
        None, description="clips only: true keeps the pseudo-videos made from stills, false the real videos"
    )

    @field_validator("sources", "labels")
    @classmethod
    def _quotable(cls, values: list[str] | None) -> list[str] | None:
        for value in values or ():
            if not value or _UNQUOTABLE.search(value):
                raise ValueError(f"{value!r}: empty, or holds a double quote, backslash or control character")
        return values

    @field_validator("sources")
    @classmethod
    def _absolute(cls, values: list[str] | None) -> list[str] | None:
        relative = [v for v in values or () if not (v.startswith("/") or "://" in v)]
        if relative:
            raise ValueError(f"{relative}: give absolute paths or URIs (source_uri holds resolved paths)")
        return values

    def describe(self) -> str:
        """The fields set, for messages: ``labels ['red circle moving left'], pseudo False``."""
        return ", ".join(f"{name} {value!r}" for name, value in self.model_dump(exclude_none=True).items())


class DataConfig(_Block):
    clips_version: int | None = Field(None, ge=1, description="clips table version; latest when empty")
    samples_version: int | None = Field(None, ge=1, description="samples table version for image rows")
    batch_size: int = Field(1, ge=1, description="samples per worker per step")
    fps_min: float = Field(1.0, gt=0)
    fps_max: float = Field(30.0, gt=0)
    curriculum_window: float = Field(
        0.5, gt=0, le=1, description="width of the sampled fps band as a fraction of fps_max - fps_min"
    )
    image_ratio: float = Field(0.0, ge=0, lt=1, description="share of rows that are images (LaVie joint training)")
    caption_dropout: float = Field(
        0.1, ge=0, le=1, description="classifier-free guidance dropout of text and image embedding"
    )
    prefetch_batches: int = Field(2, ge=0)
    cache: list[Literal["text", "latents"]] = Field(
        default_factory=list, description="frozen-encoder outputs to cache under cache/ on the storage root"
    )
    select: RowSelection = Field(
        default_factory=RowSelection, description="the clips (and image samples) trained on; all when empty"
    )

    @model_validator(mode="after")
    def _fps_ordered(self) -> "DataConfig":
        if self.fps_min > self.fps_max:
            raise ValueError("need fps_min <= fps_max")
        return self


class _StageBlock(_Block):
    steps: int = Field(1000, ge=1)
    width: int = Field(256, ge=8, description="pixels of the frames the stage trains on")
    height: int = Field(256, ge=8)
    num_frames: int = Field(16, ge=1)
    lr: float | None = Field(None, gt=0, description="this stage's peak learning rate; default optim.lr")


# The inflation options each variant's layers read (modeling.inflation); setting another is an error.
VARIANT_KNOBS: dict[str, tuple[str, ...]] = {
    "make_a_video": ("head_dim", "ff_mult", "temporal_kernel"),
    "videoldm": ("head_dim", "ff_mult", "temporal_kernel", "spatial_kernel", "text_cross_attention"),
    "lavie": (),  # the host block's own heads, rotary on 32 channels, 32 relative-position buckets
}


class _DiffusionStage(_StageBlock):
    variant: Variant = "make_a_video"
    freeze: FreezePolicy = "spatial_frozen"
    prediction_type: PredictionType = "epsilon"
    head_dim: int = Field(64, ge=1, description="channels per temporal attention head (make_a_video, videoldm)")
    ff_mult: int = Field(0, ge=0, description="feed-forward width after temporal attention, x channels; 0: none")
    temporal_kernel: int = Field(3, ge=1, description="frames each temporal conv spans, odd (make_a_video, videoldm)")
    spatial_kernel: int = Field(
        1, ge=1, description="videoldm: pixels its temporal conv spans, odd; 1: over time only (3x1x1, VideoLDM/SVD)"
    )
    text_cross_attention: bool = Field(
        False, description="videoldm: its temporal attention also cross-attends to the caption (sgm's temporal block)")
    condition_on_fps: bool = True
    frame_noise_correlation: float = Field(
        0.0, ge=0, lt=1, description="share of each frame's noise common to all frames of a clip, in training "
        "and sampling (PYoCo's mixed noise prior); 0: independent frames")

    @model_validator(mode="after")
    def _knobs_fit_variant(self) -> "_DiffusionStage":
        for name in ("temporal_kernel", "spatial_kernel"):
            if getattr(self, name) % 2 == 0:
                raise ValueError(f"{name} must be odd (same padding keeps the frame count), got {getattr(self, name)}")
        # Off their defaults only: a saved config (every field written) must load back.
        unused = set(VARIANT_KNOBS["videoldm"]) - set(VARIANT_KNOBS[self.variant])
        foreign = sorted(name for name in unused if getattr(self, name) != type(self).model_fields[name].default)
        if foreign:
            raise ValueError(f"variant {self.variant} has no {', '.join(foreign)} (it applies to other variants)")
        return self

    def inflation_options(self) -> dict[str, int | bool]:
        """The shape-changing options this stage's variant reads, for ``modeling.inflate``."""
        return {name: getattr(self, name) for name in VARIANT_KNOBS[self.variant]}


class BaseStage(_DiffusionStage):
    image_conditioning: bool | Literal["auto"] = Field(
        "auto",
        description="condition on the CLIP image embedding of a frame (text-free video, Make-A-Video); "
        "auto: on when an image encoder is there (train.image_encoder or <pretrained>/image_encoder/)",
    )
    num_image_tokens: int = Field(4, ge=1, description="context tokens the image embedding is projected to")


class InterpolationStage(_DiffusionStage):
    variant: Variant = "videoldm"
    num_frames: int = Field(5, ge=2, description="(context - 1) * factor + 1 frames")
    factor: int = Field(4, ge=2)
    context_dropout: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _frames_fit_factor(self) -> "InterpolationStage":
        if (self.num_frames - 1) % self.factor:
            raise ValueError("num_frames - 1 must be a multiple of factor")
        return self


class SuperresStage(_DiffusionStage):
    variant: Variant = "lavie"
    scale: int = Field(2, ge=2, description="latent upscaling factor; width/height are the high-res size")
    max_noise_level: int = Field(100, ge=1, description="noise augmentation levels drawn in [0, max)")
    num_frames: int = 8


class VaeDecoderStage(_StageBlock):
    num_frames: int = 8
    adversarial_weight: float = Field(0.5, ge=0)
    discriminator_channels: int = Field(64, ge=4)
    discriminator_layers: int = Field(3, ge=1)


class PriorStage(_StageBlock):
    num_frames: int = 1
    num_layers: int = Field(20, ge=1)
    num_attention_heads: int = Field(32, ge=1)
    attention_head_dim: int = Field(64, ge=1)


class NoiseSchedule(_Block):
    """The forward process of the latent diffusion stages: the pretrained folder's scheduler/ unless set."""

    num_train_timesteps: int = Field(1000, ge=1)
    beta_start: float = Field(0.00085, gt=0)
    beta_end: float = Field(0.012, gt=0)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "scaled_linear"
    rescale_betas_zero_snr: bool = Field(
        False, description="rescale the betas so that the last step is pure noise, as sampling starts (Lin et al. "
        "2024, 'Common Diffusion Noise Schedules and Sample Steps are Flawed'); needs v-prediction")
    timestep_spacing: Literal["leading", "trailing", "linspace"] = Field(
        "leading", description="which training steps sampling visits; trailing starts at the last one")


class TrainConfig(_Block):
    name: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$", description="run name: runs/<name>/<stage>/")
    pretrained: str = Field("", description="Stable Diffusion folder (diffusers layout) or hub id")
    image_encoder: str = Field(
        "", description="CLIP image encoder folder (CLIPVisionModelWithProjection); empty: <pretrained>/image_encoder/"
    )
    num_workers: int = Field(2, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0, description="fractions leave CPUs to Ray Data on small machines")
    strategy: Literal["ddp", "fsdp"] = "ddp"
    mixed_precision: Literal["auto", "no"] = Field("auto", description="auto: bf16 autocast on GPU, fp32 on CPU")
    gradient_checkpointing: bool = False
    checkpoint_every: int = Field(100, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    max_failures: int = Field(0, ge=0, description="Ray Train restarts the worker group this often")
    seed: int = 0
    export_ema: bool = Field(True, description="export EMA weights when EMA is on")
    export_full: bool = Field(
        False, description="export whole models; default: only the new and trained weights, on train.pretrained"
    )
    noise_schedule: NoiseSchedule = Field(default_factory=NoiseSchedule)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    base: BaseStage = Field(default_factory=BaseStage)
    interpolation: InterpolationStage = Field(default_factory=InterpolationStage)
    superres: SuperresStage = Field(default_factory=SuperresStage)
    vae_decoder: VaeDecoderStage = Field(default_factory=VaeDecoderStage)
    prior: PriorStage = Field(default_factory=PriorStage)

    @model_validator(mode="after")
    def _fsdp_without_ema(self) -> "TrainConfig":
        # The EMA keeps full copies of the trainable weights by name; FSDP shards them.
        if self.strategy == "fsdp" and self.optim.ema_decay is not None:
            raise ValueError("strategy fsdp needs optim.ema_decay: null (EMA of sharded weights is not supported)")
        return self

    def stage(self, name: str) -> _StageBlock:
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; expected one of {STAGES}")
        return getattr(self, name)
