"""Resumable stage outputs: each finished batch is one parquet part under the run's work folder.

A worker writes its batch's rows atomically (temp + rename) before returning, so a part
file is either whole or absent, whatever kills the job. A rerun reads the keys already
present and feeds the stage only what is left.
"""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from storage.location import StorageLocation, write_atomic


class StageParts:
    def __init__(self, location: StorageLocation, *parts: str, key: str):
        self.location = location
        self.path = location.path("work", *parts)
        self.key = key

    def _files(self) -> list[str]:
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        infos = self.location.filesystem.get_file_info(selector)
        return sorted(i.path for i in infos if i.base_name.startswith("part-") and i.base_name.endswith(".parquet"))

    def done_keys(self) -> set[str]:
        keys: set[str] = set()
        for path in self._files():
            table = pq.read_table(path, columns=[self.key], filesystem=self.location.filesystem)
            keys.update(table.column(self.key).to_pylist())
        return keys

    def write(self, rows: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(rows, sink)
        write_atomic(self.location, f"{self.path}/part-{uuid.uuid4().hex}.parquet", sink.getvalue().to_pybytes())

    def read(self, schema: pa.Schema) -> pa.Table:
        files = self._files()
        if not files:
            return schema.empty_table()
        tables = [pq.read_table(p, schema=schema, filesystem=self.location.filesystem) for p in files]
        return pa.concat_tables(tables)
