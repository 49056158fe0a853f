"""Where the storage root lives: a local folder or an ``s3://`` bucket, as a pyarrow filesystem.

A :class:`StorageLocation` is a small picklable value, so Ray workers rebuild the
same filesystem from it instead of shipping open handles.
"""

from __future__ import annotations

import os
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


def write_atomic(location: StorageLocation, path: str, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` at ``path`` so readers see the whole file or nothing.

    Local: temp file + rename (``exclusive`` uses a hard link, failing if the file exists).
    Object stores: a single PUT is already atomic; ``exclusive`` checks first.
    """
    fs = location.filesystem
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    if location.is_local:
        tmp = f"{parent}/.tmp-{os.getpid()}-{os.urandom(6).hex()}"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            if exclusive:
                os.link(tmp, path)
            else:
                os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return
    if exclusive and fs.get_file_info(path).type != pafs.FileType.NotFound:
        raise FileExistsError(path)
    with fs.open_output_stream(path) as out:
        out.write(data)


def read_bytes(location: StorageLocation, path: str) -> bytes:
    with location.filesystem.open_input_stream(path) as handle:
        return handle.read()
