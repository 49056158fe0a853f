"""Ingest throughput: ``t2v ingest`` (Ray Data, all cores) against a plain Python loop.

Both sides run the same validating probe (``storage.media.probe_video``: open,
fps, frame count, decode first and last frame) over the same folder of videos;
ingest also hashes every file and copies it into the blob store. The videos have
x264's default keyframe interval (250 frames), like most real footage, so
checking that the tail decodes costs what it costs on real data.

The loop runs first, before any Ray process exists. Then ingest runs three ways:

- cold, as ``t2v ingest`` runs it without a cluster: start local Ray, run, shut down;
- first job on a running Ray: worker processes start and import;
- warm: the same job again on a Ray whose workers already ran it (a cluster, or
  the demo's later jobs), repeated to show the spread.

    python benchmarks/ingest.py --videos 120 --seconds 20
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from storage import media

TARGET_RATIO = 1.5


def _make_one(args: tuple[Path, int, float, tuple[int, int]]) -> None:
    path, seed, seconds, (width, height) = args
    fps = 25
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(height // 16, width // 16, 3), dtype=np.uint8)
    base = np.kron(base, np.ones((16, 16, 1), np.uint8))
    frames = np.stack([np.roll(base, 2 * i, axis=1) for i in range(int(seconds * fps))])
    media.write_mp4(path, frames, fps, crf=28, gop=250)


def make_videos(folder: Path, count: int, seconds: float, size: tuple[int, int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"video_{i:03d}.mp4" for i in range(count)]
    todo = [(p, i, seconds, size) for i, p in enumerate(paths) if not p.exists()]
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_make_one, todo))
    return paths


def plain_loop(paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths:
        media.probe_video(path)
    return time.perf_counter() - started


def ray_ingest(folder: Path, expected: int) -> float:
    """Seconds for one ``run_ingest`` into a fresh storage root (Ray started inside when not running)."""
    from pipelines.ingest import run_ingest
    from pipelines.settings import load_settings

    root = Path(tempfile.mkdtemp(prefix="t2v-bench-root-"))
    try:
        settings = load_settings(overrides={"storage": {"root": str(root)}}, environ={})
        started = time.perf_counter()
        summary = run_ingest(settings, [str(folder)], run_id="benchmark")
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(root)
    assert summary.samples_found == expected, f"ingest found {summary.samples_found} of {expected} videos"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=120)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each video")
    parser.add_argument("--size", type=int, nargs=2, default=(640, 360), metavar=("W", "H"))
    parser.add_argument("--warm-runs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "t2v-bench-ingest")
    args = parser.parse_args()

    import ray

    folder = args.cache / f"{args.videos}x{args.seconds}s-{args.size[0]}x{args.size[1]}"
    paths = make_videos(folder, args.videos, args.seconds, tuple(args.size))
    # Warm the page cache so neither side pays for the first read.
    for path in paths:
        path.read_bytes()
    n = len(paths)
    loop_s = plain_loop(paths)
    timings = [("t2v ingest, cold (starts Ray)", ray_ingest(folder, n))]
    ray.init(address="local", include_dashboard=False, logging_level="ERROR")
    cpus = int(ray.cluster_resources()["CPU"])
    try:
        timings.append(("first job on running Ray", ray_ingest(folder, n)))
        timings += [(f"warm Ray, run {i + 1}", ray_ingest(folder, n)) for i in range(args.warm_runs)]
    finally:
        ray.shutdown()

    print(f"\n{n} videos of {args.seconds:g} s at {args.size[0]}x{args.size[1]}, {cpus} CPUs")
    print(f"{'plain decord loop':30s}: {loop_s:7.2f} s  {n / loop_s:7.2f} files/s")
    for label, seconds in timings:
        ratio = loop_s / seconds
        verdict = "meets" if ratio >= TARGET_RATIO else "misses"
        print(f"{label:30s}: {seconds:7.2f} s  {n / seconds:7.2f} files/s  ratio {ratio:5.2f}x  {verdict} target")
    print(f"(ingest also hashes and copies every file into the blob store; target ratio >= {TARGET_RATIO}x)")


if __name__ == "__main__":
    main()
