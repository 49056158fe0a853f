"""The evaluate job: prompts -> clips (cascade actors) -> features (extractor actors) -> metrics -> ``eval_results``.

Prompt ``i`` is generated alone with seed ``seed + i``, so a clip depends only on its
prompt and seed, never on how prompts were batched or spread over workers: any number
of workers gives the same clips and the same metrics. Generated clips go to the blob
store as mp4 and metrics are measured on the exact uint8 frames the cascade returned.
Real-video statistics for FVD/FID come from a ``clips`` table version through the
statistics cache, so they are computed once per (clips version, size, protocol, weights);
on a cache miss the real clips ride through the same extractor pool as the generated ones
(every requested network runs on them; only FVD/FID use the result).

Pools: one cascade actor per worker generates; one actor per worker holds every requested
feature network (:class:`MetricExtractors`), so each model loads once per worker. The
weight-free shapes judge runs in that pool too, one verdict per clip, averaged here.

``base_checkpoint`` evaluates the cascade with the base stage's weights taken from its training
checkpoints (one, or every kept one in the same job: the same prompts and seeds for each), so
the report's plots over training steps are curves; each checkpoint gets its own rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import ray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipelines.evaluate.features import extractor_class
from pipelines.evaluate.metrics import RankDeficientError, frechet_from_stats, inception_score
from pipelines.evaluate.prompts import EvalPrompt, PromptSetKind, prompt_set
from pipelines.evaluate.protocols import PRESETS, CLIPSIMProtocol, FVDProtocol, ISProtocol, Protocol
from pipelines.evaluate.shapes_judge import ATTRIBUTES, ClipJudgement, ShapesScores, names_an_attribute
from pipelines.evaluate.stats_cache import FeatureStats, StatsCache, stats_key, weights_id
from pipelines.generate import (
    BaseCheckpoints,
    ClipGenerator,
    GenerationConfig,
    actor_pool_options,
    cascade_source,
)
from pipelines.ray_runner import ray_session
from pipelines.settings import Settings
from pipelines.shapes.world import COLOURS, DIRECTIONS, SHAPES
from pipelines.train.checkpoint import RunPaths, kept_checkpoints
from pipelines.train.export import trained_stages
from storage.blobs import BlobStore
from storage.catalog import Catalog, Manifest
from storage.errors import T2VError
from storage.ids import stable_id
from storage.location import StorageLocation
from storage.media import read_frames

MetricName = Literal["fvd", "is", "clipsim", "fid", "shapes"]
RealMetric = Literal["fvd", "fid"]
REAL_METRICS = ("fvd", "fid")  # compared against real videos
# mp4 encode/decode tasks reserve no CPU: actor pools sized to the cluster hold every CPU,
# and tasks waiting for one would stall the pipeline that feeds those actors.
_LIGHT_TASK_CPUS = 0
Batch = dict[str, np.ndarray]

DEFAULT_METRICS: dict[str, list[MetricName]] = {
    "ucf101": ["fvd", "is"],
    "msrvtt": ["clipsim", "fvd"],
    "prompts": ["clipsim"],
    "shapes": ["shapes"],
}
# The shapes judge's result rows (metric column), each over the clips whose prompt names it.
JUDGE_RESULTS = ("colour_accuracy", "shape_accuracy", "direction_accuracy", "consistency")


def _default_protocols() -> dict[str, Protocol]:
    return {
        "fvd": PRESETS["fvd2048_16f"],
        "is": PRESETS["is_tganv2_c3d"],
        # No weights configured means random init; set a tag or pass weights for real numbers.
        "clipsim": CLIPSIMProtocol(clip_pretrained=None),
        "fid": PRESETS["fid_frames"],
        "shapes": PRESETS["shapes_judge"],
    }


class EvalConfig(BaseModel):
    """What to evaluate and how; protocols and weights per metric (no weights: random-init networks)."""

    model_config = ConfigDict(extra="forbid")

    run: str
    prompt_set: PromptSetKind = "ucf101"
    prompts_file: str | None = None
    cascade: str | None = None  # local cascade folder; default runs/<run>/cascade on the storage root
    checkpoint: str | None = None  # label in the results; default the cascade path (or the base checkpoint's)
    step: int | None = None  # training step; default the run's base stage step from the runs table
    base_checkpoint: str | None = Field(
        None, pattern=r"^(all|step_\d+)$",
        description="base weights from runs/<run>/base/checkpoints/<step_XXXXXXXX> (EMA when the run exports "
        "EMA), or 'all': every kept checkpoint in one job; step and label from each checkpoint")
    limit: int | None = Field(None, ge=1)  # first N prompts only
    samples_per_prompt: int = Field(1, ge=1)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    metrics: list[MetricName] | None = None  # default by prompt set (DEFAULT_METRICS)
    protocols: dict[MetricName, Protocol] = Field(default_factory=_default_protocols)
    weights: dict[MetricName, str] = Field(default_factory=dict)  # feature-network weights per metric
    clips_version: int | None = None  # real videos for FVD/FID; latest clips version by default
    # Frechet distance on fewer samples than feature dims: not comparable to papers, so opt-in.
    allow_singular: bool = False
    num_workers: int = Field(1, ge=1)
    batch_size: int = Field(2, ge=1)
    gpus_per_worker: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _protocol_per_metric(self) -> "EvalConfig":
        for name in self.metric_names():
            if name not in self.protocols:
                raise ValueError(f"metric {name!r} has no protocol")
            if self.protocols[name].kind != name:
                raise ValueError(f"protocols.{name} is a {self.protocols[name].kind!r} protocol")
        if self.base_checkpoint is not None and self.step is not None:
            raise ValueError("step comes from the base checkpoint: do not set both step and base_checkpoint")
        if self.base_checkpoint == "all" and self.checkpoint is not None:
            raise ValueError("base_checkpoint 'all' labels each checkpoint's rows itself: do not set checkpoint")
        return self

    def metric_names(self) -> list[MetricName]:
        return list(self.metrics) if self.metrics is not None else DEFAULT_METRICS[self.prompt_set]


@dataclass
class EvalSummary:
    run: str
    checkpoint: str
    results: list[dict[str, Any]]  # eval_results rows
    manifest: Manifest | None
    skipped: dict[str, str]  # metric -> why it was not computed
    seconds: float

    def rows(self) -> list[dict[str, Any]]:
        """One line per metric (and checkpoint) for console tables and Prefect artifacts."""
        measured = [
            {"step": "-" if r["step"] is None else r["step"], "metric": r["metric"], "protocol": r["protocol"],
             "value": round(r["value"], 4), "samples": r["num_samples"],
             "note": "random-init network" if r["random_init"] else ""}
            for r in self.results
        ]
        skipped = [{"step": "-", "metric": m, "protocol": "-", "value": "-", "samples": 0, "note": why}
                   for m, why in self.skipped.items()]
        return measured + skipped


# ---- Ray Data actors and functions --------------------------------------------------------


def decode_real_clips(batch: Batch, location: StorageLocation, num_frames: int, size: tuple[int, int]) -> Batch:
    """First ``num_frames`` frames of each real clip, at the generated clips' (width, height)."""
    blobs = BlobStore(location)
    videos = []
    for key in batch["blob"]:
        with blobs.local_path(str(key), suffix=".mp4") as path:
            videos.append(read_frames(path, list(range(num_frames)), size=size))
    return {**batch, "video": np.stack(videos)}


# ---- the job --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalTarget:
    """What one set of result rows measured: the cascade as it is, or with one base checkpoint."""

    label: str  # eval_results.checkpoint
    step: int | None


def run_evaluate(settings: Settings, config: EvalConfig, run_id: str) -> EvalSummary:
    started = time.perf_counter()
    location = settings.location()
    catalog = Catalog(location)
    prompts = prompt_set(config.prompt_set, config.prompts_file, config.limit)
    metrics = config.metric_names()
    if "shapes" in metrics:
        _check_judge_prompts(config, prompts)
    cascade_dir, cascade_location = cascade_source(config.run, config.cascade, location)
    targets, base_checkpoints = _targets(location, catalog, config, cascade_dir)
    per_target = [
        {"prompt": prompt.text, "seed": config.generation.seed + i * config.samples_per_prompt + copy}
        for i, prompt in enumerate(prompts)
        for copy in range(config.samples_per_prompt)
    ]
    # Every target sees the same prompts and seeds; rows stay ordered by target for the generators.
    rows = [{"set": "fake", "index": t * len(per_target) + i, "checkpoint": target.label, **row}
            for t, target in enumerate(targets) for i, row in enumerate(per_target)]
    _check_sample_counts(config, metrics, len(per_target))
    real_clips, skipped = _real_clips(catalog, config, metrics)
    if real_clips:  # the results name this clips version: vacuum keeps it
        catalog.pin("clips", real_clips.version, run_id)
    measured_names = [name for name in metrics if name not in skipped]
    cache = StatsCache(location.path("stats"), filesystem=location.filesystem)
    real_keys = {name: _real_stats_key(real_clips, config, name) for name in measured_names if name in REAL_METRICS}
    real_stats = {name: cache.load(key) for name, key in real_keys.items()}

    with ray_session(settings.ray):
        videos = _generate(rows, cascade_dir, cascade_location, location, config, base_checkpoints)
        if any(stats is None for stats in real_stats.values()):
            # Real clips ride through the same extractor pool: one model load per worker, not two.
            videos = videos.union(_decode_real(real_clips, location, config, measured_names))
        outputs = _extract(videos, config, measured_names)
    for name, key in real_keys.items():
        if real_stats[name] is None:
            real = [row for row in outputs if row["set"] == "real"][: _real_count(real_clips, config, name)]
            real_stats[name] = FeatureStats.from_features(_feature_matrix(_outputs_of(real, name)))
            cache.save(key, real_stats[name])
    results = []
    for target in targets:
        generated = [row for row in outputs if row["set"] == "fake" and row["checkpoint"] == target.label]
        measured: dict[str, dict[str, Any]] = {}
        for name in measured_names:
            measured |= _measure(name, _outputs_of(generated, name), real_stats.get(name), config)
        results += _result_rows(config, target, generated, measured, real_clips, run_id)
    manifest = catalog.write("eval_results", results, run_id=run_id, config_hash=settings.config_hash(),
                             extra={"run": config.run}) if results else None
    checkpoint = targets[0].label if len(targets) == 1 else f"{len(targets)} base checkpoints of {config.run}"
    return EvalSummary(config.run, checkpoint, results, manifest, skipped, time.perf_counter() - started)


class JudgePromptError(T2VError):
    """The shapes judge was asked to score prompts that name no colour, shape or direction."""


def _check_judge_prompts(config: EvalConfig, prompts: list[EvalPrompt]) -> None:
    unjudgeable = [prompt.text for prompt in prompts if not names_an_attribute(prompt.text)]
    if unjudgeable:
        raise JudgePromptError(
            f"the shapes judge scores prompts that name a colour, shape or direction ({', '.join(COLOURS)}; "
            f"{', '.join(SHAPES)}; moving {', '.join(DIRECTIONS)}); {len(unjudgeable)} of the {config.prompt_set} "
            f"prompts name none, e.g. {unjudgeable[0]!r}: use prompt set 'shapes' or drop the shapes metric")


def _targets(location: StorageLocation, catalog: Catalog, config: EvalConfig,
             cascade_dir: str) -> tuple[list[EvalTarget], BaseCheckpoints | None]:
    """The cascade as it is, or the base checkpoints asked for (each labelled by its folder)."""
    if config.base_checkpoint is None:
        return [EvalTarget(config.checkpoint or cascade_dir, _step(catalog, config))], None
    paths = RunPaths(location, config.run, "base")
    kept = kept_checkpoints(paths)
    chosen = kept if config.base_checkpoint == "all" else [s for s in kept if s.directory == config.base_checkpoint]
    if not chosen:
        available = ", ".join(s.directory for s in kept) or "none"
        raise CheckpointNotFoundError(f"run {config.run!r} keeps no base checkpoint {config.base_checkpoint!r} under "
                                      f"{paths.path('checkpoints')} (kept: {available})")
    base = trained_stages(location, config.run).get("base")
    if base is None:
        raise CheckpointNotFoundError(f"run {config.run!r} has no finished base stage whose settings say how its "
                                      "checkpoints export (EMA or not)")
    labels = {config.checkpoint or paths.path("checkpoints", state.directory): state for state in chosen}
    ema = base.export_ema and base.optim.ema_decay is not None  # what the export took
    return [EvalTarget(label, state.step) for label, state in labels.items()], BaseCheckpoints(paths, labels, ema)


class CheckpointNotFoundError(T2VError, FileNotFoundError):
    """A base checkpoint to evaluate is not among those the run keeps."""


def _result_rows(config: EvalConfig, target: EvalTarget, generated: list[dict[str, Any]],
                 measured: dict[str, dict[str, Any]], real_clips: RealClips | None, run_id: str) -> list[dict[str, Any]]:
    """One ``eval_results`` row per measured quantity; each row carries the clips, prompts and seeds it measured."""
    common = {
        "run": config.run, "checkpoint": target.label, "step": target.step, "prompt_set": config.prompt_set,
        "prompts": [row["prompt"] for row in generated], "seeds": [int(row["seed"]) for row in generated],
        "clip_blobs": [row["blob"] for row in generated], "fps": float(generated[0]["fps"]),
        "clips_version": real_clips.version if real_clips else None,
        "config": config.model_dump_json(), "eval_run_id": run_id, "created_at": time.time(),
    }
    return [
        {"id": stable_id(config.run, target.label, config.prompt_set, values["protocol"], name), "metric": name,
         **common, **values}
        for name, values in measured.items()
    ]


@dataclass
class RealClips:
    version: int
    rows: list[dict[str, Any]]  # blob and caption of clips long enough for every protocol, by id


class SampleCountError(T2VError):
    """An evaluation generates fewer clips than a metric's protocol scores."""


def _check_sample_counts(config: EvalConfig, metrics: list[MetricName], num_samples: int) -> None:
    """Fail before generating anything when a metric cannot be computed from this many clips."""
    for name in metrics:
        protocol = config.protocols[name]
        if name == "is" and num_samples < protocol.num_samples:
            raise SampleCountError(
                f"IS protocol {protocol.name} scores {protocol.num_samples} clips in {protocol.splits} splits, this "
                f"evaluation generates {num_samples}: generate at least {protocol.num_samples} (prompts x "
                f"samples_per_prompt) or use an IS protocol with num_samples={num_samples} (not comparable to papers)"
            )
        if name in ("fvd", "fid") and not config.allow_singular:
            dims = protocol.feature_dim
            samples = num_samples * (protocol.num_frames if name == "fid" else 1)
            if samples <= dims:
                raise RankDeficientError(
                    f"{name} on {samples} samples of {dims}-d features is rank deficient; generate more than "
                    f"{dims} or set allow_singular (the value is then not comparable to papers)"
                )


def _real_clips(catalog: Catalog, config: EvalConfig, metrics: list[MetricName]) -> tuple[RealClips | None, dict[str, str]]:
    """Real clips long enough for every measured protocol, or why FVD/FID are skipped."""
    needs_real = [name for name in metrics if name in REAL_METRICS]
    if not needs_real:
        return None, {}
    if config.clips_version is None and catalog.latest("clips") is None:
        return None, {name: "no clips table to take real videos from" for name in needs_real}
    manifest = catalog.manifest("clips", config.clips_version)
    table = catalog.read("clips", manifest.version, columns=["id", "blob", "caption", "num_frames"])
    frames = max(config.protocols[name].num_frames for name in metrics)
    long_enough = sorted((r for r in table.to_pylist() if r["num_frames"] >= frames), key=lambda r: r["id"])
    if len(long_enough) < 2:
        reason = f"clips v{manifest.version} has {len(long_enough)} clips of >= {frames} frames; need 2 or more"
        return None, {name: reason for name in needs_real}
    return RealClips(manifest.version, [{"blob": r["blob"], "caption": r["caption"] or ""} for r in long_enough]), {}


def _real_count(real: RealClips, config: EvalConfig, name: RealMetric) -> int:
    protocol = config.protocols[name]
    return min(len(real.rows), protocol.num_real if isinstance(protocol, FVDProtocol) else protocol.num_samples)


def _real_stats_key(real: RealClips, config: EvalConfig, name: RealMetric) -> str:
    """Cache key of real statistics: clips version, clip count and size, protocol and weights."""
    size = f"{config.generation.width}x{config.generation.height}"
    dataset_version = f"clips-v{real.version}-n{_real_count(real, config, name)}-{size}"
    return stats_key(dataset_version, config.protocols[name], weights_id(config.weights.get(name)))


def _actor_options(config: EvalConfig) -> dict[str, Any]:
    return actor_pool_options(config.num_workers, config.gpus_per_worker, config.batch_size)


def _generate(rows: list[dict], cascade_dir: str, cascade_location: StorageLocation | None,
              location: StorageLocation, config: EvalConfig, base_checkpoints: BaseCheckpoints | None) -> ray.data.Dataset:
    generated = ray.data.from_items(rows).map_batches(
        ClipGenerator,
        fn_constructor_kwargs={"cascade_dir": cascade_dir, "location": cascade_location,
                               "generation": config.generation, "base_checkpoints": base_checkpoints,
                               "store": location},
        **_actor_options(config),
    )
    # Finish generating before extraction starts: two actor pools that each want every CPU
    # can stall each other in one streaming pipeline on a small cluster.
    return generated.materialize()


def _decode_real(real: RealClips, location: StorageLocation, config: EvalConfig,
                 metrics: list[MetricName]) -> ray.data.Dataset:
    """Real clips as rows shaped like generated ones (caption as prompt), at the generated size."""
    count = max(_real_count(real, config, name) for name in metrics if name in REAL_METRICS)
    rows = [{"set": "real", "index": i, "checkpoint": "", "prompt": clip["caption"], "seed": -1, "blob": clip["blob"],
             "fps": 0.0}
            for i, clip in enumerate(real.rows[:count])]
    frames = max(config.protocols[name].num_frames for name in metrics)
    size = (config.generation.width, config.generation.height)
    return ray.data.from_items(rows).map_batches(
        decode_real_clips, fn_kwargs={"location": location, "num_frames": frames, "size": size},
        batch_size=config.batch_size, batch_format="numpy", num_cpus=_LIGHT_TASK_CPUS,
    )


class MetricExtractors:
    """Every requested metric's extractor in one actor, so one pool (one model load per worker
    and network) serves all metrics; outputs are prefixed ``<metric>.``."""

    def __init__(self, protocols: dict[str, Protocol], weights: dict[str, str]):
        self.extractors = {
            name: extractor_class(protocol)(protocol, weights_path=weights.get(name)) for name, protocol in protocols.items()
        }

    def __call__(self, batch: Batch) -> Batch:
        kept = {name: column for name, column in batch.items() if name != "video"}
        for metric, extractor in self.extractors.items():
            outputs = extractor(batch)
            kept |= {f"{metric}.{name}": column for name, column in outputs.items() if name not in batch}
        return kept


def _extract(videos: ray.data.Dataset, config: EvalConfig, names: list[MetricName]) -> list[dict[str, Any]]:
    """Extractor outputs per clip, generated then real, each in index order."""
    outputs = videos.map_batches(
        MetricExtractors,
        fn_constructor_kwargs={"protocols": {name: config.protocols[name] for name in names},
                               "weights": {name: config.weights[name] for name in names if name in config.weights}},
        **_actor_options(config),
    ).take_all()
    return sorted(outputs, key=lambda row: (row["set"], row["index"]))


def _outputs_of(outputs: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One metric's columns of the combined extractor outputs, without the prefix."""
    prefix = f"{metric}."
    return [{name[len(prefix):]: value for name, value in row.items() if name.startswith(prefix)} for row in outputs]


def _feature_matrix(outputs: list[dict[str, Any]]) -> np.ndarray:
    """(n, d) features; FID's per-frame features count every frame as a sample."""
    features = np.stack([row["features"] for row in outputs]).astype(np.float64)
    return features.reshape(-1, features.shape[-1])


def _measure(name: MetricName, outputs: list[dict[str, Any]], real: FeatureStats | None,
             config: EvalConfig) -> dict[str, dict[str, Any]]:
    """Result values by row metric name: one row per metric, the judge's four for ``shapes``."""
    protocol = config.protocols[name].name
    if name != "shapes":
        return {name: {**_metric(name, outputs, real, config), "protocol": protocol}}
    judgements = [ClipJudgement(*(None if np.isnan(row[f"{a}_correct"]) else bool(row[f"{a}_correct"]) for a in ATTRIBUTES),
                                consistency=float(row["consistency"])) for row in outputs]
    per_clip = {f"{a}_accuracy": [getattr(j, a) for j in judgements] for a in ATTRIBUTES}
    per_clip["consistency"] = [j.consistency for j in judgements]
    scores = ShapesScores.of(judgements).as_dict()
    scored = {metric: [float(v) for v in values if v is not None] for metric, values in per_clip.items()}
    return {
        metric: {"protocol": protocol, "value": scores[metric], "std": float(np.std(scored[metric])),
                 "num_samples": len(scored[metric]), "num_real": None, "random_init": False}
        for metric in JUDGE_RESULTS if scores[metric] is not None  # no prompt names that attribute
    }


def _metric(name: MetricName, outputs: list[dict[str, Any]], real: FeatureStats | None,
            config: EvalConfig) -> dict[str, Any]:
    """value, std, num_samples, num_real and random_init of one metric."""
    random_init = bool(any(row["random_init"] for row in outputs))
    counts = {"num_samples": len(outputs), "random_init": random_init, "num_real": None, "std": None}
    if name == "clipsim":
        scores = np.asarray([row["clipsim"] for row in outputs], np.float64)
        return {**counts, "value": float(scores.mean()), "std": float(scores.std())}
    if name == "is":
        protocol: ISProtocol = config.protocols["is"]
        # The protocol's sample count exactly (checked before generating): the first num_samples clips.
        probs = np.stack([row["features"] for row in outputs[: protocol.num_samples]])
        mean, std = inception_score(probs, splits=protocol.splits, shuffle_seed=protocol.shuffle_seed)
        return {**counts, "num_samples": len(probs), "value": mean, "std": std}
    fake = FeatureStats.from_features(_feature_matrix(outputs))
    value = frechet_from_stats(real.mean, real.cov, fake.mean, fake.cov, allow_singular=config.allow_singular)
    frames_per_video = 1 if name == "fvd" else config.protocols[name].num_frames
    return {**counts, "value": value, "num_real": real.count // frames_per_video}


def _step(catalog: Catalog, config: EvalConfig) -> int | None:
    """The run's base-stage step from the ``runs`` table when not given (the x axis of report plots)."""
    if config.step is not None or config.cascade is not None:
        return config.step
    runs = catalog.read("runs", columns=["id", "step"]).to_pylist()
    return next((row["step"] for row in runs if row["id"] == f"{config.run}/base"), None)
