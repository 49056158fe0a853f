"""What a training run reports: TensorBoard scalars every step, a ``runs`` catalog row at
every checkpoint, and a progress bar with step, loss and ETA. Rank 0 only."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from pipelines.train.checkpoint import RunPaths
from storage.catalog import Catalog


@dataclass
class StepTiming:
    """Seconds spent waiting for the batch and in the whole step."""

    data: float
    total: float


@dataclass
class Window:
    """Means over the steps since the last runs-table report."""

    samples: int = 0
    data_seconds: float = 0.0
    step_seconds: float = 0.0

    def add(self, samples: int, timing: StepTiming) -> None:
        self.samples += samples
        self.data_seconds += timing.data
        self.step_seconds += timing.total

    @property
    def samples_per_second(self) -> float:
        return self.samples / max(self.step_seconds, 1e-9)

    @property
    def data_wait_fraction(self) -> float:
        return self.data_seconds / max(self.step_seconds, 1e-9)


def write_run_row(paths: RunPaths, **fields: Any) -> None:
    """Upsert this run's row of the ``runs`` table."""
    row = {"id": f"{paths.name}/{paths.stage}", "name": paths.name, "stage": paths.stage, "updated_at": time.time()}
    row.update(fields)
    Catalog(paths.location).write("runs", [row], run_id=f"train-{paths.name}-{paths.stage}")


@dataclass
class RunReporter:
    paths: RunPaths
    total_steps: int
    start_step: int
    global_batch: int
    row_fields: dict[str, Any]  # constant columns: num_workers, clips_version, config
    window: Window = field(default_factory=Window)
    last: dict[str, float] = field(default_factory=dict)
    rates: dict[str, float | None] = field(
        default_factory=lambda: {"samples_per_second": None, "data_wait_fraction": None}
    )

    def __post_init__(self) -> None:
        location = self.paths.location
        # SummaryWriter wants a local folder; object stores get a copy at every report.
        self._events_dir = self.paths.path("tensorboard") if location.is_local else tempfile.mkdtemp(prefix="t2v-tb-")
        self.writer = SummaryWriter(self._events_dir)
        # Ray forwards each redraw of a worker's bar as a log line: at most one a second.
        self.bar = tqdm(
            total=self.total_steps, initial=self.start_step, desc=f"train {self.paths.stage}", unit="step", mininterval=1.0
        )

    def log_step(self, step: int, losses: dict[str, float], lr: float, timing: StepTiming) -> None:
        self.window.add(self.global_batch, timing)
        scalars = {
            **{f"loss/{k}" if k != "loss" else "loss": v for k, v in losses.items()},
            "lr": lr,
            "samples_per_second": self.global_batch / max(timing.total, 1e-9),
            "data_wait_fraction": timing.data / max(timing.total, 1e-9),
        }
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        self.last = {"loss": losses["loss"], "lr": lr}
        self.bar.set_postfix(loss=f"{losses['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
        self.bar.update(1)

    def report(self, step: int, status: str, checkpoint: str | None = None, export: str | None = None) -> dict[str, Any]:
        """Flush TensorBoard and upsert the runs row; returns the metrics written."""
        self.writer.flush()
        if not self.paths.location.is_local:
            pafs.copy_files(
                self._events_dir, self.paths.path("tensorboard"),
                source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.paths.location.filesystem,
            )
        metrics = {
            "step": step,
            "total_steps": self.total_steps,
            "samples_seen": step * self.global_batch,
            "loss": self.last.get("loss"),
            "lr": self.last.get("lr"),
        }
        if self.window.samples:  # else (a final report right after a checkpoint) keep the last window's rates
            self.rates = {
                "samples_per_second": self.window.samples_per_second,
                "data_wait_fraction": self.window.data_wait_fraction,
            }
        metrics.update(self.rates)
        if torch.cuda.is_available():
            metrics["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
        write_run_row(
            self.paths, status=status, checkpoint=checkpoint, export=export,
            tensorboard=self.paths.path("tensorboard"), **self.row_fields, **metrics,
        )
        self.window = Window()
        return metrics

    def close(self) -> None:
        self.bar.close()
        self.writer.close()
        if not self.paths.location.is_local:
            shutil.rmtree(self._events_dir, ignore_errors=True)
