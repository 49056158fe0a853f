"""Where the storage root lives: a local folder or an ``s3://`` bucket, as a pyarrow filesystem.

A :class:`StorageLocation` is a small picklable value, so Ray workers rebuild the
same filesystem from it instead of shipping open handles.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs


@dataclass(frozen=True)
class StorageLocation:
    root: str
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"

    @property
    def scheme(self) -> str:
        return urlparse(self.root).scheme.lower() if "://" in self.root else "file"

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @cached_property
    def filesystem(self) -> pafs.FileSystem:
        if self.is_local:
            return pafs.LocalFileSystem()
        if self.scheme == "s3":
            kwargs: dict = {"region": self.s3_region}
            endpoint = self.s3_endpoint or os.environ.get("AWS_ENDPOINT_URL")
            if endpoint:
                parsed = urlparse(endpoint)
                kwargs["endpoint_override"] = parsed.netloc or parsed.path
                kwargs["scheme"] = parsed.scheme or "https"
            return pafs.S3FileSystem(**kwargs)
        raise ValueError(f"storage.root: unsupported scheme {self.scheme!r}")

    @cached_property
    def base(self) -> str:
        """The root as a path inside :attr:`filesystem` (no scheme)."""
        if self.is_local:
            path = self.root[len("file://"):] if self.root.startswith("file://") else self.root
            return str(Path(path).expanduser().resolve())
        parsed = urlparse(self.root)
        return f"{parsed.netloc}{parsed.path}".rstrip("/")

    def path(self, *parts: str) -> str:
        return "/".join([self.base, *parts])

    def uri(self, *parts: str) -> str:
        """A full URI people can read (``s3://bucket/...`` or an absolute local path)."""
        inner = self.path(*parts)
        return inner if self.is_local else f"{self.scheme}://{inner}"

    def ensure_dir(self, *parts: str) -> str:
        path = self.path(*parts)
        self.filesystem.create_dir(path, recursive=True)
        return path

    def exists(self, *parts: str) -> bool:
        return self.filesystem.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def __getstate__(self) -> dict:
        # cached filesystem handles are rebuilt on the other side
        return {"root": self.root, "s3_endpoint": self.s3_endpoint, "s3_region": self.s3_region}

    def __setstate__(self, state: dict) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)


TEMP_PREFIX = ".tmp-"  # a local write in progress; one left behind was killed mid-write


def write_atomic(location: StorageLocation, path: str, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` at ``path`` so readers see the whole file or nothing.

    Local: temp file + rename (``exclusive`` uses a hard link, failing if the file exists).
    Object stores: a single PUT is already atomic; ``exclusive`` checks first.
    """
    if location.is_local:
        write_atomic_file(location, path, lambda local: Path(local).write_bytes(data), exclusive=exclusive)
        return
    fs = location.filesystem
    if exclusive and fs.get_file_info(path).type != pafs.FileType.NotFound:
        raise FileExistsError(path)
    with fs.open_output_stream(path) as out:
        out.write(data)


def write_atomic_file(
    location: StorageLocation, path: str, fill: Callable[[str], None], *, exclusive: bool = False
) -> None:
    """Like :func:`write_atomic`, with ``fill(local_path)`` writing the file, so large
    serialisations (checkpoints) stream to disk instead of sitting in memory first."""
    fs = location.filesystem
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    if not location.is_local:
        with tempfile.TemporaryDirectory(prefix="t2v-upload-") as scratch:
            local = f"{scratch}/file"
            fill(local)
            if exclusive and fs.get_file_info(path).type != pafs.FileType.NotFound:
                raise FileExistsError(path)
            with open(local, "rb") as source, fs.open_output_stream(path) as out:
                shutil.copyfileobj(source, out, 16 << 20)
        return
    tmp = f"{parent}/{TEMP_PREFIX}{os.getpid()}-{os.urandom(6).hex()}"
    try:
        fill(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_bytes(location: StorageLocation, path: str) -> bytes:
    with location.filesystem.open_input_stream(path) as handle:
        return handle.read()
