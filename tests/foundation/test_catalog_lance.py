"""The catalog on Lance: concurrent writers, kill -9 mid-commit, the old layout's conversion, time travel."""

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.settings import load_settings
from storage.catalog import Catalog, CatalogError
from storage.location import StorageLocation


def _rows(prefix, n, caption="c"):
    return [
        {"id": f"{prefix}-{i}", "kind": "image", "sha256": f"sha-{i}", "blob": f"b/{i}", "source": "s",
         "source_uri": f"/s/{i}", "bytes": 10, "caption": caption}
        for i in range(n)
    ]


def _writer(location, worker, rounds, out):
    catalog = Catalog(location)
    done = []
    for r in range(rounds):
        m = catalog.write("samples", _rows(f"w{worker}-r{r}", 3), run_id=f"w{worker}")
        done.append(m.version)
    out.put((worker, done))


def _run_writers(target, location, writers, rounds) -> dict:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(location, w, rounds, out)) for w in range(writers)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def _concurrent(location, writers=4, rounds=4):
    results = _run_writers(_writer, location, writers, rounds)
    versions = [v for done in results.values() for v in done]
    assert len(versions) == len(set(versions)), "a version number was handed out twice"
    ids = Catalog(location).read_ids("samples")
    expected = {f"w{w}-r{r}-{i}" for w in range(writers) for r in range(rounds) for i in range(3)}
    assert expected == ids, f"{len(expected - ids)} acknowledged rows lost"
    assert sorted(m.version for m in Catalog(location).versions("samples")) == sorted(versions)


def test_concurrent_writers_local(tmp_path):
    _concurrent(StorageLocation(str(tmp_path)))


def test_concurrent_writers_s3(s3_endpoint, s3_bucket):
    # moto honours If-None-Match on PutObject, so Lance's own conditional-put commit is what runs here
    _concurrent(StorageLocation(f"s3://{s3_bucket}/root", s3_endpoint=s3_endpoint), writers=3, rounds=3)


def _same_ids_writer(location, worker, rounds, out):
    catalog = Catalog(location)
    for r in range(rounds):
        catalog.write("samples", _rows("shared", 20, caption=f"w{worker}-r{r}"), run_id=f"w{worker}")
    out.put((worker, rounds))


def test_concurrent_upserts_of_the_same_ids_insert_each_once_and_record_true_counts(tmp_path):
    # Lance rebases an insert over a concurrent one, so without a conflict both writers would insert
    # the same new ids, and counts diffed against version N would be recorded on N+2
    location = StorageLocation(str(tmp_path))
    Catalog(location).write("samples", _rows("seed", 1), run_id="seed")
    _run_writers(_same_ids_writer, location, writers=2, rounds=6)
    catalog = Catalog(location)
    ids = catalog.read("samples", columns=["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 21, "an id was inserted twice"
    versions = catalog.versions("samples")
    assert len(versions) == 1 + 2 * 6
    for m in versions[1:]:
        before = {r["id"]: r for r in catalog.read("samples", m.version - 1).to_pylist()}
        after = {r["id"]: r for r in catalog.read("samples", m.version).to_pylist()}
        updated = sum(before[i] != after[i] for i in after.keys() & before.keys())
        assert (m.row_counts["added"], m.row_counts["updated"]) == (len(after.keys() - before.keys()), updated)


_KILLED_WRITER = """
import sys
from storage.catalog import Catalog
from storage.location import StorageLocation
catalog = Catalog(StorageLocation(sys.argv[1], s3_endpoint=sys.argv[2] or None))
for r in range(10_000):
    rows = [{"id": f"r{r}-{i}", "kind": "image", "sha256": "s", "blob": "b", "source": "s", "source_uri": "u",
             "bytes": 1} for i in range(200)]
    m = catalog.write("samples", rows, run_id=f"r{r}")
    print(m.version, flush=True)
"""


@pytest.mark.parametrize("where", ["local", "s3"])
def test_kill_9_mid_commit_leaves_the_last_acknowledged_version(where, tmp_path, request):
    if where == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        location = StorageLocation(f"s3://{request.getfixturevalue('s3_bucket')}/root", s3_endpoint=endpoint)
    else:
        location = StorageLocation(str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, location.root, location.s3_endpoint or ""],
                            stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    acknowledged = []
    while len(acknowledged) < 3:
        acknowledged.append(int(proc.stdout.readline()))
    time.sleep(0.05)  # land the kill inside a later write
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    acknowledged += [int(line) for line in proc.stdout.read().split()]
    catalog = Catalog(location)
    last = acknowledged[-1]
    latest = catalog.latest("samples").version
    # the write being made when killed landed whole (committed, not yet printed) or not at all
    assert latest in (last, last + 1)
    for version in range(last, latest + 1):
        assert catalog.read_ids("samples", version=version) == {f"r{r}-{i}" for r in range(version) for i in range(200)}
    assert catalog.write("samples", _rows("after", 1), run_id="after").version == latest + 1


def _old_layout(root, table, versions):
    """A root as the earlier parquet catalog laid it out: data/<name>.parquet and versions/<n>.json."""
    schema = Catalog(str(root)).read(table).schema
    base = root / "catalog" / table
    (base / "data").mkdir(parents=True)
    (base / "versions").mkdir()
    files = []
    for number, (rows, mode, counts) in enumerate(versions, start=1):
        name = f"part{number}.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), base / "data" / name)
        files = [name] if mode == "replace" else files + [name]
        manifest = {"table": table, "version": number, "parent": number - 1 or None, "run_id": f"run{number}",
                    "config_hash": f"h{number}", "created_at": 1000.0 + number, "files": list(files),
                    "row_counts": counts, "note": f"n{number}", "extra": {"k": number}}
        (base / "versions" / f"{number:08d}.json").write_text(json.dumps(manifest))


def test_old_root_converts_once_losing_nothing(tmp_path):
    _old_layout(tmp_path, "samples", [
        (_rows("a", 3, "one"), "upsert", {"added": 3, "updated": 0, "unchanged": 0, "total": 3}),
        (_rows("a", 1, "ONE") + _rows("b", 1), "upsert", {"added": 1, "updated": 1, "unchanged": 0, "total": 4}),
        (_rows("c", 2), "replace", {"added": 2, "updated": 0, "unchanged": 0, "removed": 4, "total": 2}),
    ])
    catalog = Catalog(str(tmp_path))
    assert catalog.tables() == ["samples"]
    versions = catalog.versions("samples")
    assert [(m.version, m.run_id, m.config_hash, m.note, m.created_at) for m in versions] == [
        (n, f"run{n}", f"h{n}", f"n{n}", 1000.0 + n) for n in (1, 2, 3)]
    assert [m.row_counts["total"] for m in versions] == [3, 4, 2]
    assert versions[1].row_counts["updated"] == 1 and versions[1].extra["k"] == 2
    second = {r["id"]: r["caption"] for r in catalog.read("samples", version=2).to_pylist()}
    assert second == {"a-0": "ONE", "a-1": "one", "a-2": "one", "b-0": "c"}
    assert catalog.read_ids("samples") == {"c-0", "c-1"}
    catalog.write("samples", _rows("d", 1), run_id="new")
    again = Catalog(str(tmp_path))  # a second open does not convert again
    assert [m.run_id for m in again.versions("samples")] == ["run1", "run2", "run3", "new"]


@pytest.mark.usefixtures("prefect_server")
def test_maintenance_flow_compacts_and_vacuum_keeps_the_versions_runs_pinned(tmp_path):
    from flows.catalog import catalog_maintenance_flow
    from flows.serve import deployments

    settings = load_settings(overrides={"storage": {"root": str(tmp_path)}, "schedules": {
        "catalog": {"cron": "0 4 * * *", "keep_days": 0}, "new_samples_seconds": 0}}, environ={})
    catalog = Catalog(settings.location())
    for r in range(6):
        catalog.write("samples", _rows(f"r{r}", 2), run_id=f"r{r}")
    assert catalog.pin("samples", 2, "train/base") == "run-train_base"
    catalog.pin("samples", 3, "train/base")
    catalog.pin("samples", 2, "train/base")  # a rerun of the run moves its pin
    before = catalog.read("samples").sort_by("id")
    [row] = catalog_maintenance_flow(settings=settings, keep_days=0)
    assert row["table"] == "samples" and row["fragments_removed"] > 1 and row["bytes freed"] > 0
    assert [m.version for m in catalog.versions("samples")][:-1] == [2]  # the pinned one, and the compacted latest
    assert catalog.read("samples").sort_by("id").equals(before)
    assert catalog.read_ids("samples", version=2) == {f"r{r}-{i}" for r in range(2) for i in range(2)}
    with pytest.raises(CatalogError, match="no version 3"):
        catalog.read("samples", version=3)
    assert catalog.read("samples", columns=["id"], filter="id LIKE 'r5-%'").num_rows == 2

    [deployment] = deployments(settings)
    assert deployment.name == "t2v-catalog-maintenance" and deployment.parameters["keep_days"] == 0
    assert deployment.schedules[0].schedule.cron == "0 4 * * *"


def test_ray_data_reads_the_table(tmp_path, ray_local):
    import ray
    from ray.data.expressions import col

    catalog = Catalog(str(tmp_path))
    catalog.write("samples", _rows("a", 5) + _rows("b", 3, caption="B"), run_id="r")
    catalog.write("samples", _rows("c", 2, caption="B"), run_id="later")
    first = catalog.snapshot("samples", 1)
    ds = ray.data.read_lance(first.uri, version=first.version, columns=["id", "caption"],
                             storage_options=first.storage_options).filter(expr=col("caption") == "B")
    rows = ds.take_all()
    assert sorted(r["id"] for r in rows) == ["b-0", "b-1", "b-2"] and set(rows[0]) == {"id", "caption"}
