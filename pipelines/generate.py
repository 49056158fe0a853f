"""The generate job: prompts -> a trained cascade in a Ray actor pool -> mp4 clips -> ``generations``.

Each prompt is generated alone with its own seed (``seed + i``), so a clip depends only on
its prompt, seed and settings, never on batching or worker count. Prompts listed as
``long_prompts`` become long videos with VidRD's method (clips chained by frame-level
noise reversal, past-dependent noise sampling and denoising with staged guidance).
Clips go to the blob store as mp4; the ``generations`` table records what made each one,
and reports show them. ``--out`` also writes each clip as mp4 and gif into a local folder.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Literal

import numpy as np
import ray
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray.data import ActorPoolStrategy

from modeling.cascade import Cascade, SamplingStage
from modeling.samplers.vidrd import VidRDConfig
from pipelines.ray_runner import ray_session
from pipelines.settings import Settings
from pipelines.train.checkpoint import CheckpointState, RunPaths, fetched_folder, load_trained_weights
from pipelines.train.export import assemble_run, trained_stages
from pipelines.train.objectives import CASCADE_PART
from storage.blobs import BlobStore
from storage.catalog import Catalog, Manifest
from storage.errors import T2VError
from storage.ids import stable_id
from storage.location import StorageLocation, read_bytes
from storage.media import read_frames, write_gif, write_mp4

Batch = dict[str, np.ndarray]


class GenerationConfig(BaseModel):
    """How one clip is sampled: base clip length, final size, DDIM steps, guidance (super-resolution's own
    when set), first seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_frames: int = Field(16, ge=1)
    height: int = 256
    width: int = 256
    num_inference_steps: int = Field(50, ge=1)
    guidance_scale: float = 7.5
    superres_steps: int | None = Field(None, ge=1, description="DDIM steps of super-resolution; default num_inference_steps")
    superres_guidance_scale: float | None = Field(None, description="guidance of super-resolution; default guidance_scale")
    last_stage: SamplingStage = Field(
        "superres", description="the cascade stops after this stage and decodes there; height and width are that "
        "stage's size (base: the base alone, what it learnt, at a fraction of the cost)")
    seed: int = 0  # prompt i (and copy j) gets seed + i * samples_per_prompt + j


class LongVideoConfig(BaseModel):
    """VidRD's long-video sampling (public defaults: 4 overlap frames, alpha 4, beta 0.4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_clips: int = Field(3, ge=2, description="base clips chained into one video")
    overlap: int = Field(4, ge=1, description="frames each clip shares with the previous one")
    alpha: float = Field(4.0, gt=0, description="PNS: weight of the past noise")
    beta: float = Field(0.4, ge=0, le=1, description="DSG: share of steps guided by the previous clip")
    output: Literal["new_frames", "whole_clips"] = Field(
        "new_frames", description="new_frames: later clips add only their non-overlap frames; "
        "whole_clips: every clip whole, as the official VidRD code")

    def sampler(self, num_inference_steps: int) -> VidRDConfig:
        return VidRDConfig(num_clips=self.num_clips, overlap=self.overlap, alpha=self.alpha, beta=self.beta,
                           num_inference_steps=num_inference_steps, output=self.output)


class GenerateConfig(BaseModel):
    """Which prompts to render with which run's cascade, and how."""

    model_config = ConfigDict(extra="forbid")

    run: str
    cascade: str | None = None  # local cascade folder; default runs/<run>/cascade on the storage root
    prompts: list[str] = Field(default_factory=list)
    long_prompts: list[str] = Field(default_factory=list, description="rendered as long videos with VidRD")
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    long_video: LongVideoConfig = Field(default_factory=LongVideoConfig)
    num_workers: int = Field(1, ge=1)
    gpus_per_worker: float = Field(0.0, ge=0)
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="weights and sampling: auto is bf16 on GPU, fp32 on CPU; bf16 also runs on CPU "
        "(half the memory, slower without native bf16); fp16 needs a GPU")

    @model_validator(mode="after")
    def _overlap_fits(self) -> "GenerateConfig":
        if not self.prompts and not self.long_prompts:
            raise ValueError("give at least one prompt or long prompt")
        if self.dtype == "fp16" and not self.gpus_per_worker:
            raise ValueError("dtype fp16 needs a GPU (set gpus_per_worker); on CPU use fp32 or bf16")
        if self.long_prompts and self.long_video.overlap >= self.generation.num_frames:
            raise ValueError(f"long_video.overlap ({self.long_video.overlap}) must be below "
                             f"generation.num_frames ({self.generation.num_frames})")
        return self


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def torch_dtype(dtype: str, on_gpu: bool) -> torch.dtype:
    """``GenerateConfig.dtype`` as a torch dtype (``auto``: bf16 on GPU, fp32 on CPU)."""
    if dtype == "auto":
        return torch.bfloat16 if on_gpu else torch.float32
    return DTYPES[dtype]


@dataclass
class GenerateSummary:
    run: str
    checkpoint: str
    rows: list[dict[str, Any]]  # generations rows
    manifest: Manifest
    files: list[Path]  # mp4 and gif copies written to --out
    seconds: float

    def table(self) -> list[dict[str, Any]]:
        return [{"prompt": r["prompt"], "seed": r["seed"], "long video (VidRD)": r["long_video"],
                 "frames": r["num_frames"], "size": f"{r['width']}x{r['height']}", "fps": r["fps"]} for r in self.rows]


# ---- shared with the evaluate job -----------------------------------------------------------


class CascadeNotFoundError(T2VError, FileNotFoundError):
    """The run has no exported cascade, or the folder given is not one."""


def cascade_source(run: str, cascade: str | None, location: StorageLocation) -> tuple[str, StorageLocation | None]:
    """An explicit local folder, or the run's cascade on the storage root, assembled from the
    stages the run trained when it has none yet or was assembled from fewer stages."""
    if cascade is not None:
        if not Path(cascade, "cascade.json").is_file():
            raise CascadeNotFoundError(f"{cascade}: not a cascade folder (no cascade.json)")
        return str(Path(cascade).resolve()), None
    path = location.path("runs", run, "cascade")
    trained = {CASCADE_PART[stage] for stage in trained_stages(location, run)}
    if "base" not in trained and not location.exists(f"runs/{run}/cascade/cascade.json"):
        raise CascadeNotFoundError(f"run {run!r} has no exported cascade at {path} and no trained base stage: "
                                   "train one (t2v train --stage base) or pass --cascade")
    if "base" in trained and trained != _cascade_parts(location, run):
        assemble_run(location, run)
    return path, location


def _cascade_parts(location: StorageLocation, run: str) -> set[str]:
    """The trained parts of the run's assembled cascade (none when there is none)."""
    try:
        manifest = json.loads(read_bytes(location, location.path("runs", run, "cascade", "cascade.json")))
    except (FileNotFoundError, OSError):
        return set()
    return set(manifest["parts"]) & set(CASCADE_PART.values())


def _local_cascade(cascade_dir: str, location: StorageLocation | None) -> ContextManager[Path]:
    return fetched_folder(location, cascade_dir) if location is not None else nullcontext(Path(cascade_dir))


@dataclass(frozen=True)
class BaseCheckpoints:
    """Training checkpoints of the base stage, by label, whose weights replace the cascade's base
    network for the rows that name one in their ``checkpoint`` column."""

    paths: RunPaths  # the run's base stage
    states: dict[str, CheckpointState]
    ema: bool  # the EMA weights, as the run's export took them


class ClipGenerator:
    """Loads the cascade once per actor; each row is generated alone with its own seed.

    Rows with a true ``long`` column are sampled with VidRD (``long_video``); rows whose
    ``checkpoint`` is one of ``base_checkpoints`` use that checkpoint's base weights (rows
    come ordered by checkpoint, so each actor loads one a few times at most).

    With ``store`` each clip also goes to that root's blob store as mp4 (a ``blob`` column),
    here rather than in a task after the actor: every such task started a fresh Ray worker that
    imported torch, which on 2 cores took more CPU than the clips themselves. ``keep_frames``
    False returns each clip's shape in place of its frames."""

    def __init__(self, cascade_dir: str, location: StorageLocation | None, generation: GenerationConfig,
                 long_video: LongVideoConfig | None = None, dtype: str = "auto",
                 base_checkpoints: BaseCheckpoints | None = None, store: StorageLocation | None = None,
                 keep_frames: bool = True):
        # location None: cascade_dir is a local folder; else a folder on the storage root.
        with _local_cascade(cascade_dir, location) as folder:
            self.cascade = Cascade.from_pretrained(folder, dtype=torch_dtype(dtype, torch.cuda.is_available()))
        self.generation = generation
        self.long_video = long_video.sampler(generation.num_inference_steps) if long_video else None
        self.base_checkpoints = base_checkpoints
        self.loaded: str | None = None  # label of the checkpoint whose weights the base holds
        self.store = store
        self.keep_frames = keep_frames

    def _use_checkpoint(self, label: str) -> None:
        if self.base_checkpoints is None or label == self.loaded:
            return
        checkpoints = self.base_checkpoints
        load_trained_weights(checkpoints.paths, checkpoints.states[label], self.cascade.base, checkpoints.ema)
        self.loaded = label

    def __call__(self, batch: Batch) -> Batch:
        settings = self.generation.model_dump(exclude={"seed"})
        longs = batch["long"] if "long" in batch else np.zeros(len(batch["prompt"]), bool)
        labels = batch["checkpoint"] if "checkpoint" in batch else [None] * len(longs)
        videos, fps = [], []
        for prompt, seed, long, label in zip(batch["prompt"], batch["seed"], longs, labels):
            self._use_checkpoint(str(label))
            output = self.cascade(str(prompt), seed=int(seed), long_video=self.long_video if long else None, **settings)
            videos.append(output.frames[0])
            fps.append(output.fps)
        generated = {**batch, "video": np.stack(videos), "fps": np.asarray(fps, np.float64)}
        if self.store is not None:
            generated = store_clips(generated, self.store)
        return generated if self.keep_frames else _shape_columns(generated)


def actor_pool_options(num_workers: int, gpus_per_worker: float, batch_size: int) -> dict[str, Any]:
    """``map_batches`` options of an actor pool with one model copy per worker."""
    return {"batch_size": batch_size, "batch_format": "numpy", "compute": ActorPoolStrategy(size=num_workers),
            "num_cpus": 1, "num_gpus": gpus_per_worker}


def store_clips(batch: Batch, location: StorageLocation) -> Batch:
    """mp4 of each generated clip into the blob store (content-addressed, so reruns dedupe)."""
    blobs = BlobStore(location)
    keys = []
    with tempfile.TemporaryDirectory(prefix="t2v-clips-") as tmp:
        for index, (video, fps) in enumerate(zip(batch["video"], batch["fps"])):
            path = Path(tmp) / f"{index}.mp4"
            write_mp4(path, video, float(fps))
            keys.append(blobs.put_file(path).key)
    return {**batch, "blob": np.asarray(keys, dtype=object)}


# ---- the job --------------------------------------------------------------------------------


def run_generate(settings: Settings, config: GenerateConfig, run_id: str, out: Path | None = None) -> GenerateSummary:
    started = time.perf_counter()
    location = settings.location()
    prompts = [(text, False) for text in config.prompts] + [(text, True) for text in config.long_prompts]
    rows = [{"index": i, "prompt": text, "long": long, "seed": config.generation.seed + i}
            for i, (text, long) in enumerate(prompts)]
    cascade_dir, cascade_location = cascade_source(config.run, config.cascade, location)
    with ray_session(settings.ray):
        # Long and short clips differ in length: keep their shapes, not their frames (stored as mp4).
        generated = ray.data.from_items(rows).map_batches(
            ClipGenerator,
            fn_constructor_kwargs={"cascade_dir": cascade_dir, "location": cascade_location,
                                   "generation": config.generation, "long_video": config.long_video,
                                   "dtype": config.dtype, "store": location, "keep_frames": False},
            **actor_pool_options(config.num_workers, config.gpus_per_worker, batch_size=1),
        )
        outputs = sorted(generated.take_all(), key=lambda row: row["index"])
    table = [_generation_row(config, cascade_dir, row, run_id) for row in outputs]
    manifest = Catalog(location).write("generations", table, run_id=run_id, config_hash=settings.config_hash(),
                                       extra={"run": config.run})
    files = save_copies(location, table, out) if out is not None else []
    return GenerateSummary(config.run, cascade_dir, table, manifest, files, time.perf_counter() - started)


def _shape_columns(batch: Batch) -> Batch:
    """frames, height and width columns in place of the videos."""
    shape = np.asarray([video.shape[:3] for video in batch["video"]], np.int64).reshape(-1, 3)
    kept = {name: column for name, column in batch.items() if name != "video"}
    return {**kept, "num_frames": shape[:, 0], "height": shape[:, 1], "width": shape[:, 2]}


def _generation_row(config: GenerateConfig, checkpoint: str, output: dict[str, Any], run_id: str) -> dict[str, Any]:
    long = bool(output["long"])
    settings = {"generation": config.generation.model_dump(), "long_video": config.long_video.model_dump() if long else None}
    return {
        "id": stable_id(config.run, checkpoint, output["prompt"], int(output["seed"]), settings),
        "run": config.run, "checkpoint": checkpoint, "prompt": str(output["prompt"]), "seed": int(output["seed"]),
        "long_video": long, "num_frames": int(output["num_frames"]), "width": int(output["width"]),
        "height": int(output["height"]), "fps": float(output["fps"]), "blob": str(output["blob"]),
        "config": config.model_dump_json(),
        "generate_run_id": run_id, "created_at": time.time(),
    }


def save_copies(location: StorageLocation, rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """Each generated clip as ``<out>/<NN>-<prompt>.mp4`` and ``.gif``, for people to open."""
    out.mkdir(parents=True, exist_ok=True)
    blobs, files = BlobStore(location), []
    for index, row in enumerate(rows):
        stem = out / f"{index:02d}-{slug(row['prompt'])}"
        with blobs.local_path(row["blob"], suffix=".mp4") as path:
            frames = read_frames(path)
            mp4 = stem.with_suffix(".mp4")
            mp4.write_bytes(Path(path).read_bytes())
        gif = stem.with_suffix(".gif")
        write_gif(gif, frames, row["fps"])
        files += [mp4, gif]
    return files


def slug(text: str, length: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:length] or "clip"
