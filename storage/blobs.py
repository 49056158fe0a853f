"""Content-addressed blob store for media: ``<root>/blobs/sha256/<first 2 hex>/<hash>``."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow.fs as pafs

from storage.location import StorageLocation, read_bytes, write_atomic

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Blob:
    sha256: str
    key: str  # relative to the storage root
    size: int


def blob_key(sha256: str) -> str:
    return f"blobs/sha256/{sha256[:2]}/{sha256}"


def sha256_file(path: str | os.PathLike) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class BlobStore:
    def __init__(self, location: StorageLocation):
        self.location = location

    def put_bytes(self, data: bytes) -> Blob:
        sha = hashlib.sha256(data).hexdigest()
        key = blob_key(sha)
        if not self.location.exists(key):
            write_atomic(self.location, self.location.path(key), data)
        return Blob(sha, key, len(data))

    def put_file(self, path: str | os.PathLike) -> Blob:
        sha, size = sha256_file(path)
        key = blob_key(sha)
        if not self.location.exists(key):
            if self.location.is_local:
                target = Path(self.location.path(key))
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".tmp-{os.getpid()}-{os.urandom(6).hex()}")
                shutil.copyfile(path, tmp)
                os.replace(tmp, target)
            else:
                with open(path, "rb") as src, self.location.filesystem.open_output_stream(self.location.path(key)) as out:
                    shutil.copyfileobj(src, out, _CHUNK)
        return Blob(sha, key, size)

    def read(self, key: str) -> bytes:
        return read_bytes(self.location, self.location.path(key))

    def exists(self, key: str) -> bool:
        return self.location.filesystem.get_file_info(self.location.path(key)).type == pafs.FileType.File

    @contextlib.contextmanager
    def local_path(self, key: str, suffix: str = "") -> Iterator[str]:
        """A local file path for ``key`` (decord and PyAV want paths); a temp copy for object stores."""
        if self.location.is_local:
            yield self.location.path(key)
            return
        with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
            with self.location.filesystem.open_input_stream(self.location.path(key)) as src:
                shutil.copyfileobj(src, tmp, _CHUNK)
            tmp.flush()
            yield tmp.name
