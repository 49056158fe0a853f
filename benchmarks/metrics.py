"""Metric benchmarks: Frechet distance vs scipy's sqrtm, and feature extraction on Ray.

    python benchmarks/metrics.py                 # everything
    python benchmarks/metrics.py --skip-ray      # Frechet distance only
    python benchmarks/metrics.py --skip-frechet  # feature extraction only

Frechet distance: the eigen formulation against ``scipy.linalg.sqrtm`` on the same
Gaussian statistics in the same run (targets: >= 10x faster, relative difference
<= 1e-6). Feature extraction: videos/s of random-init I3D on small clips in one
process (1 thread) and with 1 and 2 Ray actors of 1 CPU each, both once the actors
run (batch timestamps) and end to end with actor start-up.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable

import numpy as np

from pipelines.evaluate.metrics import frechet_from_stats, frechet_from_stats_sqrtm, gaussian_stats


def timed(run: Callable[[], float]) -> tuple[float, float]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def correlated_stats(seed: int, n: int, d: int, scale: float, shift: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) / np.sqrt(d)
    return gaussian_stats(rng.standard_normal((n, d)) @ mixing * scale + shift)


def bench_frechet(n: int, d: int, repeats: int, reference_repeats: int) -> None:
    stats = (*correlated_stats(0, n, d, 1.0, 0.0), *correlated_stats(1, n, d, 1.2, 0.1))
    frechet_from_stats(*stats)  # warm up BLAS threads
    # Interleaved, best of each: the CPUs are shared, so load swings hit both sides alike.
    fast_times, ref_times = [], []
    for repeat in range(max(repeats, reference_repeats)):
        if repeat < repeats:
            fast_times.append(timed(lambda: frechet_from_stats(*stats)))
        if repeat < reference_repeats:
            ref_times.append(timed(lambda: frechet_from_stats_sqrtm(*stats)))
    (fast_s, fast), (ref_s, ref) = min(fast_times), min(ref_times)
    print(
        f"frechet d={d:<5d} (stats of n={n}): ours {fast_s * 1e3:9.1f} ms  scipy sqrtm {ref_s * 1e3:9.1f} ms  "
        f"speedup {ref_s / fast_s:6.1f}x  rel diff {abs(fast - ref) / abs(ref):.1e}  (FD {fast:.4f})"
    )


class TimedExtractor:
    """I3D extractor that stamps each batch with its wall-clock start and end."""

    def __init__(self, **kwargs):
        from pipelines.evaluate.features import VideoFeatureExtractor

        self.extract = VideoFeatureExtractor(**kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, started = len(batch["video"]), time.time()
        output = self.extract(batch)
        return {**output, "started": np.full(rows, started), "finished": np.full(rows, time.time())}


def bench_extraction(num_videos: int, frames: int, size: int) -> None:
    import ray
    import torch
    from ray.data import ActorPoolStrategy

    from pipelines.evaluate.features import VideoFeatureExtractor
    from pipelines.evaluate.protocols import FVDProtocol

    protocol = FVDProtocol(name="fvd_bench", num_frames=frames, size=size)
    videos = np.random.default_rng(0).integers(0, 256, (num_videos, frames, size, size, 3), dtype=np.uint8)
    torch.set_num_threads(1)  # like one Ray actor with num_cpus=1
    extractor = VideoFeatureExtractor(protocol, device="cpu")
    extractor({"video": videos[:2]})  # warm up
    start = time.perf_counter()
    for first in range(0, num_videos, 4):
        extractor({"video": videos[first : first + 4]})
    single_s = time.perf_counter() - start
    print(f"I3D {frames}x{size}x{size}, random init: in-process, 1 thread {num_videos / single_s:6.2f} videos/s")

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    rates = {}
    for workers in (1, 2):
        start = time.perf_counter()
        rows = (
            ray.data.from_items([{"index": i, "video": video} for i, video in enumerate(videos)])
            .map_batches(
                TimedExtractor,
                fn_constructor_kwargs={"protocol": protocol, "device": "cpu"},
                batch_size=4,
                batch_format="numpy",
                compute=ActorPoolStrategy(size=workers),
                num_cpus=1,
            )
            .take_all()
        )
        end_to_end = time.perf_counter() - start
        assert len(rows) == num_videos
        # Processing window seen by the actors: first batch started to last batch finished.
        window = max(row["finished"] for row in rows) - min(row["started"] for row in rows)
        rates[workers] = num_videos / window
        print(
            f"I3D {frames}x{size}x{size}, random init: {workers} Ray actor(s): {rates[workers]:6.2f} videos/s "
            f"once started ({num_videos / end_to_end:5.2f} videos/s end to end, actor start-up included)"
        )
    print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")
    ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-frechet", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other jobs share them)")
    if not args.skip_frechet:
        bench_frechet(n=2048, d=400, repeats=args.repeats, reference_repeats=args.repeats)
        # 2048-d needs more than 2048 samples for a full-rank covariance (FID uses 10k-50k);
        # sqrtm takes about a minute there, so it runs twice.
        bench_frechet(n=4096, d=2048, repeats=args.repeats, reference_repeats=2)
    if not args.skip_ray:
        bench_extraction(args.videos, args.frames, args.size)


if __name__ == "__main__":
    main()
