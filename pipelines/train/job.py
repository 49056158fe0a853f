"""Ray Train job: stages of the cascade trained by one group of ``TorchTrainer`` workers.

The driver reads each stage's last checkpoint to know its data position, builds one Ray
Data pipeline per stage from that sample on, and starts ``num_workers`` workers (gloo on
CPU, NCCL on GPU) that run :func:`pipelines.train.loop.train_stage` on their shard of each
stage in turn: the worker group starts once for ``--stage all``. Running the same command
again skips the finished stages and resumes the others from their last checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from pipelines.ray_runner import ray_session
from pipelines.settings import Settings, SettingsError
from pipelines.train.checkpoint import latest_checkpoint
from pipelines.train.config import TrainConfig
from pipelines.train.data import SampleSpec, TrainingSources, training_dataset, training_sources
from pipelines.train.loop import TrainJob, WorkerContext, train_stage
from pipelines.train.metrics import write_run_row
from pipelines.train.preflight import check_pretrained, with_folder_defaults
from storage.catalog import Catalog
from storage.errors import T2VError
from storage.location import StorageLocation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageResult:
    stage: str
    step: int
    export: str
    metrics: dict[str, Any]

    def row(self) -> dict[str, Any]:
        return {"stage": self.stage, "step": self.step, "export": self.export, **{
            k: self.metrics.get(k) for k in ("loss", "samples_per_second", "data_wait_fraction")
        }}


def ray_train_loop(loop_config: dict[str, Any]) -> None:
    """Entry point of each Ray Train worker: the jobs' stages one after another."""
    import ray.train

    context = ray.train.get_context()
    for job in loop_config["jobs"]:
        train_stage(job, worker_context(job.config, ray.train.get_dataset_shard(job.stage), context))


def worker_context(config: TrainConfig, shard: Any, context: Any) -> WorkerContext:
    import ray.train
    import ray.train.torch

    torch.set_num_threads(max(1, int(config.cpus_per_worker)))
    batches = shard.iter_batches(
        batch_size=config.data.batch_size,
        batch_format="numpy",
        drop_last=True,
        prefetch_batches=config.data.prefetch_batches,
    )
    # A batch of only images skips every temporal layer, leaving them without gradients.
    strategy_kwargs = {"find_unused_parameters": config.data.image_ratio > 0} if config.strategy == "ddp" else None

    def wrap(model: torch.nn.Module) -> torch.nn.Module:
        return ray.train.torch.prepare_model(
            model, parallel_strategy=config.strategy, parallel_strategy_kwargs=strategy_kwargs
        )

    return WorkerContext(
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        device=ray.train.torch.get_device(),
        batches=batches,
        wrap=wrap,
        report=ray.train.report,
    )


def make_job(settings: Settings, stage: str) -> TrainJob:
    """Validate what the job needs and pin the clips version (latest when unset)."""
    config = settings.train
    if not config.pretrained:
        raise SettingsError("train.pretrained is empty: set a Stable Diffusion folder or hub id")
    check_pretrained(config, stage)
    config = with_folder_defaults(config)
    location = settings.location()
    sources = stage_sources(location, config, stage)
    # the versions this run reads are pinned under its run id, so vacuum keeps them for resumes and lineage
    catalog = Catalog(location)
    for source in (sources.videos, sources.images):
        if source is not None:
            catalog.pin(source.table.table, source.table.version, f"{config.name}/{stage}")
    versions = {"clips_version": sources.videos.table.version}
    if sources.images is not None:
        versions["samples_version"] = sources.images.table.version
    data = config.data.model_copy(update=versions)
    return TrainJob(stage, config.model_copy(update={"data": data}), location, versions["clips_version"])


def stage_sources(location: StorageLocation, config: TrainConfig, stage: str) -> TrainingSources:
    # LaVie's joint image-video batches for the base model; the prior also learns from captioned images.
    with_images = config.data.image_ratio > 0 and stage in ("base", "prior")
    return training_sources(location, config.data, captioned_only=stage == "prior", with_images=with_images)


def make_trainer(jobs: list[TrainJob], datasets: dict[str, Any]):
    """One worker group for ``jobs`` (same run, so the same scaling), with each stage's dataset."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    config, location = jobs[0].config, jobs[0].location
    # The cluster's GPUs, not this driver's: on a cluster the driver often has none.
    use_gpu = ray.cluster_resources().get("GPU", 0) >= 1
    if config.strategy == "fsdp" and not use_gpu:
        raise SettingsError("train.strategy fsdp needs GPUs (Ray Train shards only CUDA models); use ddp on CPU")
    return TorchTrainer(
        ray_train_loop,
        train_loop_config={"jobs": jobs},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=config.num_workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": config.cpus_per_worker, **({"GPU": 1} if use_gpu else {})},
        ),
        run_config=RunConfig(
            name=f"{config.name}-{'-'.join(job.stage for job in jobs)}",
            storage_path=location.path("runs", config.name, "ray"),
            storage_filesystem=None if location.is_local else location.filesystem,
            failure_config=FailureConfig(max_failures=config.max_failures),
        ),
        datasets=datasets,
    )


def run_stages(settings: Settings, stages: list[str]) -> list[StageResult]:
    """Train ``stages`` in order, each to its configured step count (resuming from a checkpoint
    where one exists), and export each; stages already finished are skipped."""
    jobs = [make_job(settings, stage) for stage in stages]  # every stage's pre-flight before any training
    todo = []
    for job in jobs:
        resumed, row = latest_checkpoint(job.paths), run_row(job)
        if resumed and resumed.step >= job.total_steps and row and row["status"] == "finished":
            log.info("%s already trained for %d steps: nothing to do", job.stage, resumed.step)
            continue
        if resumed:
            log.info("resuming %s from step %d", job.stage, resumed.step)
        todo.append(job)
    if todo:
        with ray_session(settings.ray):
            trainer = make_trainer(todo, {job.stage: stage_dataset(job) for job in todo})
            try:
                trainer.fit()
            except Exception as exc:
                # stages run in order: the first one not finished is the one that failed (the last
                # one when the group failed after every stage had finished)
                failed = next((job for job in todo if (run_row(job) or {}).get("status") != "finished"), todo[-1])
                _record_failure(failed, exc)
                raise worker_error(exc) from None
    results = []
    for job in jobs:
        row = run_row(job)
        results.append(StageResult(job.stage, row["step"], row["export"], row))
    return results


def stage_dataset(job: TrainJob) -> Any:
    """The stage's samples from its checkpoint's data position on."""
    config = job.config
    sources = stage_sources(job.location, config, job.stage)
    total_samples = job.total_steps * config.num_workers * config.data.batch_size
    spec = SampleSpec.from_config(config.data, config.stage(job.stage), total_samples, config.seed)
    resumed = latest_checkpoint(job.paths)
    start = min(resumed.samples_seen if resumed else 0, total_samples)
    return training_dataset(job.location, sources, spec, start, total_samples)


def run_row(job: TrainJob) -> dict[str, Any] | None:
    """The job's row of the ``runs`` table, if it has one."""
    runs = Catalog(job.location).read("runs").to_pylist()
    return next((r for r in runs if r["id"] == f"{job.config.name}/{job.stage}"), None)


def root_exception(exc: BaseException) -> BaseException:
    """The error behind Ray Train's wrappers (a worker group failure names only "Training failed
    due to worker errors:"; the lowest failed rank's exception is the cause)."""
    failures = getattr(exc, "worker_failures", None)
    if failures:
        exc = failures[min(failures)]
    return getattr(exc, "cause", None) or exc  # RayTaskError carries the original exception


def root_error(exc: BaseException) -> str:
    """``Type: first line`` of the worker's error: what the runs table keeps."""
    exc = root_exception(exc)
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def worker_error(exc: Exception) -> BaseException:
    """What ``t2v train`` raises for a failed run: the worker's own error, so t2v's errors print in
    one line; any other keeps the worker's traceback (Ray's message holds it) as a note."""
    root = root_exception(exc)
    if root is not exc and not isinstance(root, T2VError):
        root.add_note(str(exc).partition("\n")[2] or str(exc))
    return root


def _record_failure(job: TrainJob, exc: Exception) -> None:
    resumed = latest_checkpoint(job.paths)
    write_run_row(
        job.paths,
        status="failed",
        error=root_error(exc)[:500],
        step=resumed.step if resumed else 0,
        total_steps=job.total_steps,
        samples_seen=resumed.samples_seen if resumed else 0,
        num_workers=job.config.num_workers,
        clips_version=job.clips_version,
        config=job.config.model_dump_json(),
        checkpoint=job.paths.path("checkpoints", resumed.directory) if resumed else None,
    )
