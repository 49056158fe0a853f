"""The catalog: named, versioned parquet tables under ``<root>/catalog/<table>/``.

Layout::

    catalog/<table>/data/<uuid>.parquet       immutable data files
    catalog/<table>/versions/00000003.json    one manifest per version

A version's manifest lists the data files that make it up. Writing a version
adds one data file holding only new or changed rows and commits by creating the
next manifest exclusively, so a crash leaves at most an unreferenced data file
and readers never see a half-written version. Rows are keyed by ``id``: when a
later file holds an ``id`` again, the later row wins (upsert).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from storage.errors import T2VError
from storage.location import StorageLocation, read_bytes, write_atomic
from storage.schemas import schema_for

_ROW_INDEX = "__row_index"


class CatalogError(T2VError):
    pass


@dataclass(frozen=True)
class Manifest:
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

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Manifest":
        return cls(**json.loads(data))


class Catalog:
    def __init__(self, location: StorageLocation | str):
        self.location = location if isinstance(location, StorageLocation) else StorageLocation(location)

    # ---- discovery -------------------------------------------------------------------------
    def tables(self) -> list[str]:
        base = self.location.path("catalog")
        infos = self.location.filesystem.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def versions(self, table: str) -> list[Manifest]:
        base = self.location.path("catalog", table, "versions")
        infos = self.location.filesystem.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        names = sorted(i.path for i in infos if i.base_name.endswith(".json") and not i.base_name.startswith("."))
        return [Manifest.from_json(read_bytes(self.location, p)) for p in names]

    def latest(self, table: str) -> Manifest | None:
        versions = self.versions(table)
        return versions[-1] if versions else None

    def manifest(self, table: str, version: int | None = None) -> Manifest:
        if version is None:
            latest = self.latest(table)
            if latest is None:
                raise CatalogError(f"table {table!r} has no versions yet")
            return latest
        path = self._manifest_path(table, version)
        try:
            return Manifest.from_json(read_bytes(self.location, path))
        except FileNotFoundError:
            raise CatalogError(f"table {table!r} has no version {version}") from None

    # ---- reading ---------------------------------------------------------------------------
    def read(self, table: str, version: int | None = None, columns: list[str] | None = None) -> pa.Table:
        """The rows of a version (latest by default); an empty table if the table was never written."""
        schema = schema_for(table)
        if version is None and self.latest(table) is None:
            return schema.empty_table() if columns is None else schema.empty_table().select(columns)
        result = self._read_files(table, self.manifest(table, version).files, schema)
        return result if columns is None else result.select(columns)

    def read_ids(self, table: str, version: int | None = None) -> set[str]:
        return set(self.read(table, version, columns=["id"]).column("id").to_pylist())

    def _read_files(self, table: str, files: list[str], schema: pa.Schema) -> pa.Table:
        if not files:
            return schema.empty_table()
        parts = []
        for name in files:
            part = pq.read_table(self._data_path(table, name), filesystem=self.location.filesystem, schema=schema)
            parts.append(part)
        combined = pa.concat_tables(parts)
        return _last_row_per_id(combined)

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
        outputs a job recomputes whole (clips, funnel); unchanged content reuses the parent's files.
        """
        schema = schema_for(table)
        new = _as_table(rows, schema)
        if len(new) != len(set(new.column("id").to_pylist())):
            new = _last_row_per_id(new)
        for _ in range(10):  # optimistic concurrency: another writer may take our version number
            parent = self.latest(table)
            current = self._read_files(table, parent.files, schema) if parent else schema.empty_table()
            delta, counts = _diff(current, new)
            files = list(parent.files) if parent else []
            if mode == "replace":
                counts["removed"] = len(current) - counts["updated"] - counts["unchanged"]
                if len(delta) or counts["removed"]:
                    files = [self._write_data_file(table, new)]
                counts["total"] = len(new)
            else:
                if len(delta):
                    files.append(self._write_data_file(table, delta))
                counts["total"] = len(current) + counts["added"]
            manifest = Manifest(
                table=table,
                version=(parent.version + 1) if parent else 1,
                parent=parent.version if parent else None,
                run_id=run_id,
                config_hash=config_hash,
                created_at=time.time(),
                files=files,
                row_counts=counts,
                note=note,
                extra=extra or {},
            )
            try:
                write_atomic(
                    self.location, self._manifest_path(table, manifest.version), manifest.to_json(), exclusive=True
                )
                return manifest
            except FileExistsError:
                continue
        raise CatalogError(f"could not commit a new version of {table!r}: too many concurrent writers")

    def _write_data_file(self, table: str, rows: pa.Table) -> str:
        name = f"{uuid.uuid4().hex}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(rows, sink, compression="zstd")
        write_atomic(self.location, self._data_path(table, name), sink.getvalue().to_pybytes())
        return name

    def _manifest_path(self, table: str, version: int) -> str:
        return self.location.path("catalog", table, "versions", f"{version:08d}.json")

    def _data_path(self, table: str, name: str) -> str:
        return self.location.path("catalog", table, "data", name)


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
