"""A threshold change re-curates in seconds: the rules run again on stored scores, nothing else.

Curates the curation benchmark's videos (the same files ``benchmarks/curation.py`` makes), changes
one threshold of every filter, runs ``t2v curate`` again and prints the second run's wall time
against the first (target <= 5 %). A clean run with the new thresholds in a fresh storage root
must give the same clips and funnel.

    python benchmarks/refilter.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from curation import real_videos  # noqa: E402

from pipelines.curate.job import run_curate  # noqa: E402
from pipelines.ingest import run_ingest  # noqa: E402
from pipelines.settings import load_settings  # noqa: E402
from storage.catalog import Catalog  # noqa: E402

# one threshold of each filter, each moved so that it keeps fewer clips
NEW_THRESHOLDS = {
    "size": {"min_short_side": 300},
    "motion": {"max_score": 0.08},
    "blur": {"min_score": 100.0},
    "nsfw": {"threshold": 0.3},
    "toxicity": {"threshold": 0.3},
    "watermark": {"threshold": 0.3},
    "aesthetic": {"min_score": 5.0},
    "dedup": {"max_hamming": 12},
}


def _settings(root: Path, cpus: int, curate: dict | None = None):
    return load_settings(overrides={"storage": {"root": str(root)}, "ray": {"num_cpus": cpus}, "curate": curate or {}},
                         environ={})


def _curate(root: Path, cpus: int, run_id: str, curate: dict | None = None):
    started = time.perf_counter()
    summary = run_curate(_settings(root, cpus, curate), run_id=run_id)
    return summary, time.perf_counter() - started


def _result(root: Path) -> tuple[list[dict], list[tuple]]:
    catalog = Catalog(str(root))
    clips = sorted(catalog.read("clips").to_pylist(), key=lambda r: r["id"])
    funnel = sorted((r["stage"], r["rows_in"], r["rows_out"], r["dropped"]) for r in catalog.read("funnel").to_pylist())
    return clips, funnel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=12, help="joined videos of ~23 s each, as benchmarks/curation.py")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "t2v-bench-curation-v2")
    args = parser.parse_args()

    files = [str(f) for f in real_videos(args.cache / "videos", args.videos)]
    with tempfile.TemporaryDirectory() as tmp:
        tuned, clean = Path(tmp, "tuned"), Path(tmp, "clean")
        for root in (tuned, clean):
            run_ingest(_settings(root, args.cpus), files, run_id="bench-ingest")
        first, first_s = _curate(tuned, args.cpus, "first")
        second, second_s = _curate(tuned, args.cpus, "refilter", NEW_THRESHOLDS)
        _, clean_s = _curate(clean, args.cpus, "clean", NEW_THRESHOLDS)
        same = _result(tuned) == _result(clean)
        print(f"{len(files)} videos on {args.cpus} CPUs; thresholds changed: "
              + ", ".join(f"{stage}.{k}={v}" for stage, block in NEW_THRESHOLDS.items() for k, v in block.items()))
        print(f"{'':34}{'wall s':>8}{'clips kept':>12}")
        print(f"{'first curate':34}{first_s:8.2f}{first.clips.row_counts['total']:12d}")
        print(f"{'curate after threshold change':34}{second_s:8.2f}{second.clips.row_counts['total']:12d}")
        print(f"{'clean curate, new thresholds':34}{clean_s:8.2f}")
        print(f"refilter / first: {second_s / first_s:.1%}   (target <= 5 %)")
        print(f"refiltered result equals the clean run (clips and funnel): {same}")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
