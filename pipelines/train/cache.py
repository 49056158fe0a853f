"""Frozen-encoder outputs cached on the storage root, one safetensors file per key.

``cache/<kind>/<model fingerprint>/<sha256 of key>.safetensors``: the fingerprint
hashes the pretrained source and the encoder's config, so another model never reads
these files. Text states are keyed by caption; VAE posteriors (mean and log-variance,
so every read still draws a fresh latent sample) by clip, frame indices and size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from storage.location import StorageLocation, read_bytes, write_atomic


def fingerprint(pretrained: str, config: dict) -> str:
    text = json.dumps({"pretrained": pretrained, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TensorCache:
    location: StorageLocation
    kind: str  # "text" | "latents"
    model: str  # fingerprint of the encoder

    def _path(self, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.location.path("cache", self.kind, self.model, digest[:2], f"{digest}.safetensors")

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        try:
            return load_safetensors(read_bytes(self.location, self._path(key)))
        except (FileNotFoundError, OSError):
            return None

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        data = save_safetensors({name: t.detach().cpu().contiguous() for name, t in tensors.items()})
        write_atomic(self.location, self._path(key), data)


def cached_rows(
    cache: TensorCache | None, keys: list[str], compute: Callable[[list[int]], list[dict[str, torch.Tensor]]]
) -> list[dict[str, torch.Tensor]]:
    """Per-row tensors: cache hits are read, the misses computed in one batch (by row
    position) and written back. Without a cache everything is computed."""
    if cache is None:
        return compute(list(range(len(keys))))
    rows: list[dict[str, torch.Tensor] | None] = [cache.get(key) for key in keys]
    missing = [i for i, row in enumerate(rows) if row is None]
    if missing:
        for position, tensors in zip(missing, compute(missing)):
            cache.put(keys[position], tensors)
            rows[position] = tensors
    return rows
