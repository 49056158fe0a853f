"""Ray Train end to end: two gloo workers on real clips, kill -9 after a checkpoint, the
Prefect flow resumes it, and the exported base model samples inside a cascade."""

from __future__ import annotations

import io
import os
import signal
import threading
import time

from pathlib import Path
import torch

from flows.train import train_flow
from modeling.cascade import Cascade
from pipelines.settings import Settings
from pipelines.train.checkpoint import latest_checkpoint
from pipelines.train.export import assemble_cascade
from pipelines.train.job import run_stages
from pipelines.train.loop import TrainJob
from pipelines.train.tiny import tiny_train_config
from storage.catalog import Catalog

TOTAL_STEPS = 8


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def train_workers() -> list[int]:
    """Ray Train worker processes started by this test session's local Ray."""
    workers = []
    for pid in descendants(os.getpid()):
        try:
            if b"RayTrainWorker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(pid)
        except OSError:
            continue
    return workers


def run_until_killed(settings: Settings, paths) -> BaseException:
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            run_stages(settings, ["base"])
        except BaseException as exc:  # the killed run fails; that is the point
            failure.append(exc)

    thread = threading.Thread(target=fit)
    thread.start()
    deadline = time.monotonic() + 300
    while latest_checkpoint(paths) is None and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = train_workers()
    assert len(workers) == 2, f"Ray Train workers {workers}; the run so far: {failure or 'no error'}"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert failure, "the run finished before it could be killed"
    return failure[0]


def test_two_workers_killed_after_a_checkpoint_resume_and_export(train_data, ray_local, prefect_server):
    config = tiny_train_config(
        train_data.pretrained, name="ray", num_workers=2, base={"steps": TOTAL_STEPS}, data={"batch_size": 1}
    )
    settings = Settings(storage={"root": str(train_data.root)}, train=config)
    paths = TrainJob("base", config, train_data.location).paths

    error = run_until_killed(settings, paths)
    killed_at = latest_checkpoint(paths)
    assert 2 <= killed_at.step < TOTAL_STEPS
    # the caller (t2v train) gets the worker's own error, as the runs table keeps it, not Ray's wrapper
    failed = next(r for r in Catalog(train_data.location).read("runs").to_pylist() if r["id"] == "ray/base")
    assert type(error).__name__ != "WorkerGroupError" and failed["error"].startswith(f"{type(error).__name__}: ")

    summary = train_flow(settings=settings, stage="base")  # the same command again
    (result,) = summary.stages
    assert result.step == TOTAL_STEPS
    row = next(r for r in Catalog(train_data.location).read("runs").to_pylist() if r["id"] == "ray/base")
    assert row["status"] == "finished" and row["resumed_from"] == killed_at.step and row["num_workers"] == 2
    assert row["samples_seen"] == TOTAL_STEPS * 2 and 0 <= row["data_wait_fraction"] < 1
    pins = Catalog(train_data.location).dataset("clips").tags.list()
    assert pins["run-ray_base"]["version"] == row["clips_version"]  # vacuum keeps the clips the run read
    final = latest_checkpoint(paths)
    optimizer = torch.load(io.BytesIO(open(f"{paths.path('checkpoints', final.directory)}/optimizer.pt", "rb").read()))
    assert {float(s["step"]) for s in optimizer["optimizer"]["state"].values()} == {float(TOTAL_STEPS)}

    cascade = Cascade.from_pretrained(assemble_cascade(train_data.location, config, ["base"]), device="cpu")
    video = cascade("a cat runs", num_frames=4, height=32, width=32, num_inference_steps=2, seed=0)
    assert video.frames.shape == (1, 4, 32, 32, 3)
    assert (cascade("a cat runs", num_frames=4, height=32, width=32, num_inference_steps=2, seed=0).frames == video.frames).all()
