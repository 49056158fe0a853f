"""THE training loop, the same for every stage; read it top to bottom.

It runs on each Ray Train worker (``job.worker_context`` builds the context), or in
one process for tests (``local_context``). Per step: wait for a batch, encode it with
the frozen T2I parts, run the stage objective, backward, clip, step, EMA; every
``checkpoint_every`` steps save and report. At the end export the stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from diffusers.optimization import get_cosine_schedule_with_warmup
from torch import nn

from pipelines.train.checkpoint import CheckpointState, RunPaths, export_stage, load_checkpoint, save_checkpoint
from pipelines.train.config import TrainConfig
from pipelines.train.ema import Ema
from pipelines.train.encoders import FrozenEncoders
from pipelines.train.metrics import RunReporter, StepTiming
from pipelines.train.objectives import Objective, build_objective, encoder_needs
from storage.location import StorageLocation


@dataclass(frozen=True)
class TrainJob:
    """Everything a worker needs to train one stage (picklable: it travels to Ray workers)."""

    stage: str
    config: TrainConfig
    location: StorageLocation
    clips_version: int | None = None

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.location, self.config.name, self.stage)

    @property
    def total_steps(self) -> int:
        return self.config.stage(self.stage).steps


@dataclass
class WorkerContext:
    rank: int
    world_size: int
    device: torch.device
    batches: Iterable[dict[str, np.ndarray]]  # raw decoded samples, this worker's share
    wrap: Callable[[nn.Module], nn.Module]  # DDP / FSDP (identity in one process)
    report: Callable[[dict[str, Any]], None]  # to Ray Train at checkpoints


def local_context(batches: Iterable[dict[str, np.ndarray]], device: str = "cpu") -> WorkerContext:
    """One process, no Ray: for tests and debugging."""
    return WorkerContext(0, 1, torch.device(device), batches, wrap=lambda m: m, report=lambda metrics: None)


def step_seed(seed: int, step: int, rank: int) -> int:
    """Noise, timesteps and dropout of a step depend only on (seed, step, rank), so a
    resumed run draws exactly what the uninterrupted one would have."""
    return (seed * 1_000_003 + step) * 1_009 + rank


def _mean_across_ranks(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    values = torch.stack([v.detach().float() for v in losses.values()])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return dict(zip(losses, values.tolist()))


def clip_grad_norm(model: nn.Module, params: list[nn.Parameter], max_norm: float) -> None:
    # FSDP holds gradient shards: only its own method computes the global norm.
    if hasattr(model, "clip_grad_norm_"):
        model.clip_grad_norm_(max_norm)
    else:
        torch.nn.utils.clip_grad_norm_(params, max_norm)


def _export_prefix(objective: Objective) -> str:
    part = objective.export_model()
    return next(name for name, child in objective.named_children() if child is part) + "."


def train_stage(job: TrainJob, ctx: WorkerContext) -> dict[str, Any]:
    config, paths = job.config, job.paths
    is_writer = ctx.rank == 0
    global_batch = ctx.world_size * config.data.batch_size

    # ---- model: frozen encoders + the stage objective, wrapped for data parallelism ----
    torch.manual_seed(config.seed)  # identical new layers on every rank
    needs = encoder_needs(job.stage, config)
    encoders = FrozenEncoders.load(
        config.pretrained, ctx.device, **needs, cache_location=job.location, cache=config.data.cache,
        image_encoder=config.image_encoder,
    )
    objective = build_objective(job.stage, config, encoders).to(ctx.device)
    if config.gradient_checkpointing and objective.export_model()._supports_gradient_checkpointing:
        objective.export_model().enable_gradient_checkpointing()
    model = ctx.wrap(objective)
    params = [p for p in model.parameters() if p.requires_grad]
    lr = config.stage(job.stage).lr or config.optim.lr
    optimizer = torch.optim.AdamW(params, lr=lr, betas=config.optim.betas, weight_decay=config.optim.weight_decay)
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, config.optim.warmup_steps, job.total_steps)
    ema = Ema(objective, config.optim.ema_decay) if config.optim.ema_decay is not None else None

    # ---- resume from the last checkpoint, if any ----
    resumed = load_checkpoint(paths, model, optimizer, lr_schedule, ema)
    step = resumed.step if resumed else 0
    data_position = resumed.samples_seen if resumed else 0
    reporter = None
    if is_writer:
        row_fields = {
            "resumed_from": step,
            "num_workers": ctx.world_size,
            "clips_version": job.clips_version,
            "config": config.model_dump_json(),
        }
        reporter = RunReporter(paths, job.total_steps, step, global_batch, row_fields)
    bf16 = ctx.device.type == "cuda" and config.mixed_precision == "auto"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else nullcontext()

    # ---- the loop ----
    model.train()
    batches = iter(ctx.batches)
    last_checkpoint = resumed.directory if resumed else None
    while step < job.total_steps:
        started = time.perf_counter()
        raw = next(batches, None)
        if raw is None:
            raise RuntimeError(f"the data ran out at step {step} of {job.total_steps}")
        if int(np.max(raw["index"])) < data_position:
            continue  # trained on before the checkpoint (a Ray Train retry replays the dataset from its start)
        waited = time.perf_counter() - started

        torch.manual_seed(step_seed(config.seed, step, ctx.rank))
        with autocast:
            inputs = objective.prepare(raw, encoders)
            losses = model(**inputs)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        clip_grad_norm(model, params, config.optim.grad_clip)
        optimizer.step()
        lr_schedule.step()
        if ema is not None:
            ema.update()
        step += 1

        logged = _mean_across_ranks(losses)
        if reporter is not None:
            timing = StepTiming(data=waited, total=time.perf_counter() - started)
            reporter.log_step(step, logged, lr_schedule.get_last_lr()[0], timing)
        if step % config.checkpoint_every == 0 or step == job.total_steps:
            last_checkpoint = f"step_{step:08d}"
            state = CheckpointState(step, step * global_batch, last_checkpoint)
            save_checkpoint(
                paths, state, model, optimizer, lr_schedule, ema, is_writer=is_writer, keep=config.keep_checkpoints
            )
            checkpoint = paths.path("checkpoints", last_checkpoint)
            metrics = reporter.report(step, "running", checkpoint=checkpoint) if reporter else {}
            ctx.report({"step": step, **metrics})

    # ---- export the finished stage: what training changed, on the pretrained folder ----
    export_ema = ema if config.export_ema else None
    part, prefix = objective.export_model(), _export_prefix(objective)
    pretrained = None if config.export_full else config.pretrained
    export = export_stage(paths, model, part, prefix, export_ema, pretrained, is_writer=is_writer)
    if reporter is None:
        return {"step": step}
    checkpoint = paths.path("checkpoints", last_checkpoint) if last_checkpoint else None
    final = reporter.report(step, "finished", checkpoint=checkpoint, export=export)
    reporter.close()
    return {**final, "export": export}
