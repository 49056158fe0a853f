"""The catalog on Lance against the parquet catalog it replaced, in the same run.

    python benchmarks/catalog.py --sizes 10000 100000 1000000 [--old-sizes 10000 100000] [--old-commit 51c1d36]
        [--writers 8 --rounds 20] [--s3]

The old implementation is loaded from git history into a temporary module, so no old code stays in
the package. Prints seconds per operation and the new/old ratio, then the concurrency check
(lost rows, reused version numbers) for the new catalog on a local root and, with --s3, on a moto
S3 server on loopback.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.catalog import Catalog  # noqa: E402
from storage.location import StorageLocation  # noqa: E402


def _old_catalog(commit: str):
    source = subprocess.run(["git", "show", f"{commit}:storage/catalog.py"], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    path = Path(tempfile.mkdtemp()) / "old_catalog.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_catalog", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_catalog"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module.Catalog


def _rows(start: int, n: int, caption: str = "a caption") -> pa.Table:
    ids = [f"clip-{i:09d}" for i in range(start, start + n)]
    return pa.table({"id": ids, "kind": ["video"] * n, "sha256": [f"{i:064x}" for i in range(start, start + n)],
                     "blob": [f"blobs/{i}" for i in ids], "source": ["bench"] * n, "source_uri": ids,
                     "bytes": pa.array(range(n), pa.int64()), "caption": [caption] * n,
                     "width": pa.array([256] * n, pa.int32()), "height": pa.array([256] * n, pa.int32())})


def _timed(fn, repeat: int = 1) -> float:
    """Seconds of one call, or the best of ``repeat`` calls (reads: a busy machine only adds time)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


READS = 3  # each read is timed as the best of this many


def _bench(catalog, size: int, small_writes: int, compact) -> dict[str, float]:
    catalog.write("samples", _rows(0, size), run_id="seed")
    probe = pa.array(random.Random(0).sample([f"clip-{i:09d}" for i in range(size)], 1000))
    out = {
        "upsert 1,000 new": _timed(lambda: catalog.write("samples", _rows(size, 1000), run_id="new")),
        "upsert 1,000 changed": _timed(lambda: catalog.write("samples", _rows(0, 1000, "changed"), run_id="chg")),
        "read all": _timed(lambda: catalog.read("samples"), READS),
        "read 3 columns": _timed(lambda: catalog.read("samples", columns=["id", "blob", "caption"]), READS),
        "1,000 rows by id": _timed(lambda: catalog.read("samples").filter(pc.is_in(pc.field("id"), probe)), READS),
    }
    for w in range(small_writes):
        catalog.write("samples", _rows(size + 1000 + w * 10, 10), run_id=f"small{w}")
    out[f"read all after {small_writes} writes"] = _timed(lambda: catalog.read("samples"), READS)
    if compact is not None:
        compact(catalog)
        out[f"read all after {small_writes} writes, compacted"] = _timed(lambda: catalog.read("samples"), READS)
    return out


def _writer(location, worker, rounds, queue):
    catalog = Catalog(location)
    versions = []
    for r in range(rounds):
        rows = _rows(1_000_000 + worker * 10_000 + r * 50, 50)
        versions.append(catalog.write("samples", rows, run_id=f"w{worker}").version)
    queue.put(versions)


def _concurrency(location: StorageLocation, writers: int, rounds: int) -> str:
    Catalog(location).write("samples", _rows(0, 1000), run_id="seed")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start = time.perf_counter()
    procs = [ctx.Process(target=_writer, args=(location, w, rounds, queue)) for w in range(writers)]
    for p in procs:
        p.start()
    versions = [v for _ in procs for v in queue.get()]
    for p in procs:
        p.join()
    seconds = time.perf_counter() - start
    ids = Catalog(location).read_ids("samples")
    expected = {f"clip-{1_000_000 + w * 10_000 + r * 50 + i:09d}" for w in range(writers) for r in range(rounds)
                for i in range(50)}
    return (f"{writers} writers x {rounds} rounds on {location.root}: {len(expected - ids)} acknowledged rows lost, "
            f"{len(versions) - len(set(versions))} version numbers reused, {seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--old-sizes", type=int, nargs="*", default=None,
                        help="sizes at which the old catalog also runs (default: all of --sizes; none with the flag alone)")
    parser.add_argument("--small-writes", type=int, default=200)
    parser.add_argument("--old-commit", default="51c1d36", help="commit holding the parquet catalog")
    parser.add_argument("--writers", type=int, default=8, help="0 skips the concurrency check")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--s3", action="store_true", help="also run the concurrency check on a moto S3 server")
    args = parser.parse_args()
    old = _old_catalog(args.old_commit)
    old_sizes = set(args.sizes if args.old_sizes is None else args.old_sizes)
    with tempfile.TemporaryDirectory(prefix="t2v-bench-catalog-") as work:
        for size in args.sizes:
            started = time.perf_counter()
            new_t = _bench(Catalog(tempfile.mkdtemp(dir=work)), size, args.small_writes, lambda c: c.compact("samples"))
            new_s, started = time.perf_counter() - started, time.perf_counter()
            old_t = _bench(old(tempfile.mkdtemp(dir=work)), size, args.small_writes, None) if size in old_sizes else {}
            old_s = time.perf_counter() - started
            print(f"\n{size:,} rows            new (Lance)    old (parquet)   new/old"
                  f"   (whole run: new {new_s:.0f} s, old {old_s:.0f} s)")
            for name, seconds in new_t.items():
                before = old_t.get(name)
                ratio = f"{seconds / before:8.3f}" if before else "       -"
                print(f"  {name:42s} {seconds:8.3f} s  " + (f"{before:8.3f} s" if before else "         -") + f"  {ratio}")
            sys.stdout.flush()
        if not args.writers:
            return
        print("\nconcurrency")
        print(" ", _concurrency(StorageLocation(tempfile.mkdtemp(dir=work)), args.writers, args.rounds))
        if args.s3:
            import os
            import socket

            import logging

            import boto3
            from moto.server import ThreadedMotoServer

            for key, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
                os.environ.setdefault(key, value)
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()
            endpoint = f"http://127.0.0.1:{port}"
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
            print(" ", _concurrency(StorageLocation("s3://bench/root", s3_endpoint=endpoint), args.writers, args.rounds))
            server.stop()


if __name__ == "__main__":
    main()
