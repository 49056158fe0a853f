"""The catalog: named, versioned tables under ``<root>/catalog/<table>.lance`` in the Lance format.

Each table is one Lance dataset with its explicit pyarrow schema (:mod:`storage.schemas`). Every
:meth:`Catalog.write` is exactly one Lance commit, so a t2v version *is* a Lance version; the run
id, config hash, row counts, note and extras travel as that commit's transaction properties.
Lance commits through its own protocol (atomic rename locally, conditional PUT on S3), so two
writers never both take version N; every write also collides with any write committed since it
read (see ``_exclusive``), so the loser diffs again against the new head and commits N+1.

Upserts go through ``merge_insert`` on ``id`` and touch only new or changed rows; ``replace``
overwrites the table. A root written by the earlier home-made parquet layout
(``catalog/<table>/versions/*.json``) converts once, version by version, when first opened.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterable, Literal

import lance
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from lance.commit import CommitConflictError

from storage.errors import T2VError
from storage.location import StorageLocation, read_bytes, write_atomic
from storage.schemas import schema_for

_ROW_INDEX = "__row_index"
_PROPS = "t2v"  # transaction property holding a version's JSON record
_ATTEMPTS = 40
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")  # characters Lance refuses in a tag name
_LEGACY_DONE = "MIGRATED"  # written into an old-layout table folder once it has been converted


class CatalogError(T2VError):
    pass


@dataclass(frozen=True)
class Manifest:
    """What t2v records about one version of a table."""

    table: str
    version: int
    parent: int | None
    run_id: str
    config_hash: str
    created_at: float
    files: list[str]
    row_counts: dict[str, int]
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TableSnapshot:
    """One version of a table as readers outside the Catalog open it (``ray.data.read_lance``)."""

    table: str
    uri: str
    version: int
    storage_options: dict[str, str]


class Catalog:
    def __init__(self, location: StorageLocation | str):
        self.location = location if isinstance(location, StorageLocation) else StorageLocation(location)

    # ---- where -----------------------------------------------------------------------------
    def uri(self, table: str) -> str:
        """The Lance dataset of ``table``, for other tools (``lance.dataset``, ``ray.data.read_lance``)."""
        schema_for(table)  # unknown names fail here with the list of known ones
        return self.location.uri("catalog", f"{table}.lance")

    @property
    def storage_options(self) -> dict[str, str]:
        if self.location.is_local:
            return {}
        options = {"region": self.location.s3_region}
        endpoint = self.location.s3_endpoint or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["endpoint"] = endpoint
            options["allow_http"] = str(endpoint.startswith("http://")).lower()
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            if os.environ.get(key):
                options[key.lower()] = os.environ[key]
        return options

    def dataset(self, table: str, version: int | None = None) -> lance.LanceDataset | None:
        """The table's Lance dataset (converting an old-layout table first); None if never written."""
        self._migrate(table)
        try:
            return lance.dataset(self.uri(table), version=version, storage_options=self.storage_options)
        except ValueError as exc:
            if version is not None and self._exists(table):
                raise CatalogError(f"table {table!r} has no version {version}") from None
            if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
                return None
            raise

    def snapshot(self, table: str, version: int | None = None) -> TableSnapshot:
        """``version`` (latest by default) of ``table``, resolved to a number so every reader sees the same rows."""
        ds = self.dataset(table, version)
        if ds is None:
            raise CatalogError(f"table {table!r} has no versions yet")
        return TableSnapshot(table, self.uri(table), ds.version, self.storage_options)

    def _exists(self, table: str) -> bool:
        return self.location.exists("catalog", f"{table}.lance", "_versions")

    # ---- discovery -------------------------------------------------------------------------
    def tables(self) -> list[str]:
        base = self.location.path("catalog")
        infos = self.location.filesystem.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        names = {i.base_name.removesuffix(".lance") for i in infos if i.type == pafs.FileType.Directory}
        return sorted(names)

    def versions(self, table: str) -> list[Manifest]:
        ds = self.dataset(table)
        if ds is None:
            return []
        return [self._manifest(ds, v["version"]) for v in ds.versions()]

    def latest(self, table: str) -> Manifest | None:
        ds = self.dataset(table)
        return None if ds is None else self._manifest(ds, ds.version)

    def manifest(self, table: str, version: int | None = None) -> Manifest:
        ds = self.dataset(table, version)
        if ds is None:
            raise CatalogError(f"table {table!r} has no versions yet")
        return self._manifest(ds, ds.version)

    def _manifest(self, ds: lance.LanceDataset, version: int) -> Manifest:
        at = ds if ds.version == version else ds.checkout_version(version)
        tx = at.read_transaction(version)
        record = json.loads((tx.transaction_properties or {}).get(_PROPS, "{}")) if tx else {}
        if not record:  # a version t2v did not write itself (compaction): say what made it, and when
            stamp = next(v["timestamp"] for v in at.versions() if v["version"] == version)
            record = {"note": type(tx.operation).__name__.lower() if tx else "", "created_at": stamp.timestamp()}
        files = sorted(f.path for frag in at.get_fragments() for f in frag.data_files())
        total = at.count_rows()
        return Manifest(
            table=record.get("table", ""),
            version=version,
            parent=version - 1 if version > 1 else None,
            run_id=record.get("run_id", ""),
            config_hash=record.get("config_hash", ""),
            created_at=record.get("created_at", 0.0),
            files=files,
            row_counts={**record.get("row_counts", {}), "total": total},
            note=record.get("note", ""),
            extra=record.get("extra", {}),
        )

    # ---- reading ---------------------------------------------------------------------------
    def read(
        self, table: str, version: int | None = None, columns: list[str] | None = None, filter: str | None = None
    ) -> pa.Table:
        """The rows of a version (latest by default); an empty table if the table was never written.

        ``filter`` is a SQL predicate pushed down to the scan (``"caption IS NOT NULL"``).
        """
        schema = schema_for(table)
        ds = self.dataset(table, version)
        if ds is None:
            return schema.empty_table() if columns is None else schema.empty_table().select(columns)
        return ds.to_table(columns=columns, filter=filter).cast(schema if columns is None else pa.schema(
            [schema.field(c) for c in columns]))

    def read_ids(self, table: str, version: int | None = None) -> set[str]:
        return set(self.read(table, version, columns=["id"]).column("id").to_pylist())

    # ---- writing ---------------------------------------------------------------------------
    def write(
        self,
        table: str,
        rows: pa.Table | Iterable[dict],
        *,
        run_id: str,
        config_hash: str = "",
        note: str = "",
        extra: dict[str, Any] | None = None,
        mode: Literal["upsert", "replace"] = "upsert",
    ) -> Manifest:
        """Write a new version of ``table`` and return its manifest.

        ``upsert``: the parent's rows plus ``rows`` (by ``id``). ``replace``: exactly ``rows``, for
        outputs a job recomputes whole (clips, funnel); unchanged content keeps the parent's files.
        """
        schema = schema_for(table)
        new = _as_table(rows, schema)
        if len(new) != len(set(new.column("id").to_pylist())):
            new = _last_row_per_id(new)
        record = {"table": table, "run_id": run_id, "config_hash": config_hash, "created_at": time.time(),
                  "note": note, "extra": extra or {}}
        for attempt in range(_ATTEMPTS):
            try:
                return self._commit_version(table, new, schema, record, mode)
            except OSError as exc:
                # another writer committed since this one read (a CommitConflictError, see _exclusive),
                # or Lance gave up after its retry timeout under heavy contention: nothing was
                # acknowledged, so diff against the new head and retry
                if not isinstance(exc, CommitConflictError) and "concurrent writers" not in str(exc):
                    raise
                time.sleep(random.uniform(0, 0.2 * (attempt + 1)))
        raise CatalogError(f"could not commit a new version of {table!r}: too many concurrent writers")

    def _commit_version(self, table: str, new: pa.Table, schema: pa.Schema, record: dict, mode: str) -> Manifest:
        ds = self.dataset(table)
        if ds is None:
            record["row_counts"] = {"added": len(new), "updated": 0, "unchanged": 0}
            if mode == "replace":
                record["row_counts"]["removed"] = 0
            return self._create(table, new, schema, record, mode)
        if mode == "replace":
            current = ds.to_table().cast(schema)
            delta, counts = _diff(current, new)
            counts["removed"] = len(current) - counts["updated"] - counts["unchanged"]
            record["row_counts"] = counts
            if len(delta) or counts["removed"]:
                fragments = lance.fragment.write_fragments(new, ds.uri, schema=schema,
                                                           storage_options=self.storage_options)
                op = lance.LanceOperation.Overwrite(schema, fragments)
            else:
                op = _exclusive(ds, lance.LanceOperation.Update())
            tx = lance.Transaction(ds.version, op, transaction_properties={_PROPS: json.dumps(record)})
            committed = lance.LanceDataset.commit(ds, tx, storage_options=self.storage_options)
            return self._manifest(committed, committed.version)
        current = ds.to_table(filter=pc.field("id").isin(new.column("id"))).cast(schema) if len(new) else None
        delta, counts = _diff(current if current is not None else schema.empty_table(), new)
        record["row_counts"] = counts
        if len(delta):
            builder = ds.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
            op = builder.execute_uncommitted(delta)[0].operation
        else:
            op = lance.LanceOperation.Update()
        tx = lance.Transaction(ds.version, _exclusive(ds, op), transaction_properties={_PROPS: json.dumps(record)})
        committed = lance.LanceDataset.commit(ds, tx, storage_options=self.storage_options, max_retries=100)
        return self._manifest(committed, committed.version)

    def _create(self, table: str, rows: pa.Table, schema: pa.Schema, record: dict, mode: str) -> Manifest:
        fragments = lance.fragment.write_fragments(rows, self.uri(table), schema=schema,
                                                   storage_options=self.storage_options)
        tx = lance.Transaction(0, lance.LanceOperation.Overwrite(schema, fragments),
                               transaction_properties={_PROPS: json.dumps(record)})
        try:
            # no retries: a retried Overwrite would land on top of another writer's first version
            ds = lance.LanceDataset.commit(self.uri(table), tx, storage_options=self.storage_options, max_retries=0)
        except (OSError, ValueError) as exc:
            if not self._exists(table):
                raise
            # another writer created the table first: ours becomes the next version onto theirs
            return self._commit_version(table, rows, schema, record, mode)
        if ds.version != 1:
            raise CatalogError(f"table {table!r}: creating it landed as version {ds.version}")
        return self._manifest(ds, ds.version)

    # ---- maintenance -----------------------------------------------------------------------
    def pin(self, table: str, version: int, run_id: str) -> str:
        """Tag ``version`` as read by ``run_id`` (``run-<run_id>``), so :meth:`vacuum` never deletes a
        version a run trained, curated or evaluated on; a run that re-pins moves its tag. The tag's name."""
        name = "run-" + _TAG_UNSAFE.sub("_", run_id)
        ds = self.dataset(table)
        if ds is None:
            raise CatalogError(f"table {table!r} has no versions yet")
        tags = ds.tags.list()
        if name not in tags:
            ds.tags.create(name, version)
        elif tags[name]["version"] != version:
            ds.tags.update(name, version)
        return name

    def compact(self, table: str) -> dict[str, int]:
        """Rewrite small fragments into large ones; a new version with the same rows."""
        ds = self.dataset(table)
        if ds is None:
            return {"fragments_removed": 0, "fragments_added": 0}
        metrics = ds.optimize.compact_files()
        return {"fragments_removed": metrics.fragments_removed, "fragments_added": metrics.fragments_added}

    def vacuum(self, table: str, keep: timedelta) -> int:
        """Delete versions older than ``keep`` (tagged versions and the latest stay); bytes removed."""
        ds = self.dataset(table)
        if ds is None:
            return 0
        stats = ds.cleanup_old_versions(older_than=keep, error_if_tagged_old_versions=False)
        return stats.bytes_removed

    def maintain(self, keep: timedelta) -> list[dict[str, Any]]:
        """Compact every table, then vacuum its versions older than ``keep``: one row per table."""
        return [{"table": name, **self.compact(name), "bytes freed": self.vacuum(name, keep)} for name in self.tables()]

    # ---- one-time conversion of the old layout ---------------------------------------------
    def _migrate(self, table: str) -> None:
        old = self.location.path("catalog", table, "versions")
        fs = self.location.filesystem
        if fs.get_file_info(old).type != pafs.FileType.Directory or self.location.exists("catalog", table, _LEGACY_DONE):
            return
        if self._exists(table):  # a conversion that died half-way: start again
            fs.delete_dir(self.location.path("catalog", f"{table}.lance"))
        schema = schema_for(table)
        infos = fs.get_file_info(pafs.FileSelector(old))
        names = sorted(i.path for i in infos if i.base_name.endswith(".json") and not i.base_name.startswith("."))
        for number, path in enumerate(names, start=1):
            manifest = json.loads(read_bytes(self.location, path))
            parts = [pq.read_table(self.location.path("catalog", table, "data", name), filesystem=fs, schema=schema)
                     for name in manifest["files"]]
            rows = _last_row_per_id(pa.concat_tables(parts)) if parts else schema.empty_table()
            counts = {k: v for k, v in manifest["row_counts"].items() if k != "total"}
            record = {"table": table, "run_id": manifest["run_id"], "config_hash": manifest["config_hash"],
                      "created_at": manifest["created_at"], "note": manifest.get("note", ""),
                      "extra": {**manifest.get("extra", {}), "migrated_from_version": manifest["version"]},
                      "row_counts": counts}
            lance.write_dataset(rows, self.uri(table), schema=schema, mode="create" if number == 1 else "overwrite",
                                storage_options=self.storage_options,
                                transaction_properties={_PROPS: json.dumps(record)})
        write_atomic(self.location, self.location.path("catalog", table, _LEGACY_DONE), b"converted to Lance\n")


def _exclusive(ds: lance.LanceDataset, op: lance.LanceOperation.Update):
    """``op`` made to conflict with every other write committed since ``ds``'s version.

    Lance rebases an insert-only ``merge_insert`` over a concurrent one (the fragments they touch are
    disjoint), so two writers could both insert the same new id, and the counts diffed against
    version N would be recorded on N+2. Every write therefore also rewrites, unchanged, the first
    fragment of the version it read: two writes from the same version then collide and the loser
    gets a ``CommitConflictError`` and redoes its diff. An Update with nothing else commits a
    version with the same rows (an idempotent rerun is still a version)."""
    fragments = ds.get_fragments()
    if not fragments:  # an empty table: nothing to collide on, and nothing a rerun could duplicate
        return op if op.new_fragments else lance.LanceOperation.Project(ds.schema)
    first = min(fragments, key=lambda f: f.fragment_id).metadata
    if first.id in {f.id for f in op.updated_fragments} | set(op.removed_fragment_ids):
        return op
    return dataclasses.replace(op, updated_fragments=[*op.updated_fragments, first])


def _as_table(rows: pa.Table | Iterable[dict], schema: pa.Schema) -> pa.Table:
    table = _conform(rows, schema)
    empty = [f.name for f in schema if not f.nullable and table.column(f.name).null_count]
    if empty:
        raise CatalogError(f"rows do not match the schema: required columns have nulls: {empty}")
    return table


def _conform(rows: pa.Table | Iterable[dict], schema: pa.Schema) -> pa.Table:
    if isinstance(rows, pa.Table):
        missing = [n for n in schema.names if n not in rows.column_names]
        for name in missing:
            rows = rows.append_column(schema.field(name), pa.nulls(len(rows), schema.field(name).type))
        extra = set(rows.column_names) - set(schema.names)
        if extra:
            raise CatalogError(f"columns not in the schema: {sorted(extra)}")
        try:
            return rows.select(schema.names).cast(schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
            raise CatalogError(f"rows do not match the schema: {exc}") from exc
    try:
        return pa.Table.from_pylist(list(rows), schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as exc:
        raise CatalogError(f"rows do not match the schema: {exc}") from exc


def _last_row_per_id(table: pa.Table) -> pa.Table:
    indexed = table.append_column(_ROW_INDEX, pa.array(range(len(table)), pa.int64()))
    last = indexed.group_by("id", use_threads=False).aggregate([(_ROW_INDEX, "max")])
    keep = pc.sort_indices(last.column(f"{_ROW_INDEX}_max"))
    return table.take(pc.take(last.column(f"{_ROW_INDEX}_max"), keep))


def _diff(current: pa.Table, new: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    """Rows of ``new`` that are absent from ``current`` or differ from it."""
    if len(current) == 0:
        return new, {"added": len(new), "updated": 0, "unchanged": 0}
    known = pc.is_in(new.column("id"), value_set=current.column("id"))
    fresh = new.filter(pc.invert(known))
    overlap = new.filter(known)
    changed_idx: list[int] = []
    if len(overlap):
        old = current.filter(pc.is_in(current.column("id"), value_set=overlap.column("id")))
        old_by_id = {row["id"]: row for row in old.to_pylist()}
        changed_idx = [i for i, row in enumerate(overlap.to_pylist()) if old_by_id[row["id"]] != row]
    changed = overlap.take(pa.array(changed_idx, pa.int64()))
    counts = {"added": len(fresh), "updated": len(changed), "unchanged": len(overlap) - len(changed)}
    return pa.concat_tables([fresh, changed]), counts
