"""Models saved as what training changed, on top of the pretrained folder they came from.

As AnimateDiff's motion adapters: a stage export holds the new and trained weights
(``adapter.safetensors``), the full model's ``config.json``, and ``adapter.json``
naming the pretrained subfolder the other weights come from (its path and a content
hash). :func:`load_adapter` rebuilds the full model from both; the models' own
``from_pretrained`` detect this layout, so every loader takes either kind of folder.

The hash is SHA-256 over the subfolder's ``config.json`` and the full bytes of the
weight files it loads. Sizes and mtimes miss a same-size fine-tune, and so do
safetensors headers (a DreamBooth UNet has SD's exact names, dtypes and shapes);
reading every byte once costs about what loading them does, and each file is hashed
once per process.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from storage.errors import T2VError

ADAPTER_FILE = "adapter.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
HASH_CHUNK = 8 << 20


class PretrainedSourceError(T2VError):
    """The pretrained folder an adapter sits on is missing or holds other weights."""


def is_adapter(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_FILE).is_file()


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files diffusers loads from a model folder: one file, or the shards of its index."""
    single = folder / SAFETENSORS_WEIGHTS_NAME
    if single.is_file():
        return [single]
    index = folder / f"{SAFETENSORS_WEIGHTS_NAME}.index.json"
    if index.is_file():
        return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    raise PretrainedSourceError(f"{folder}: no {SAFETENSORS_WEIGHTS_NAME} (or its shard index) to build on")


@functools.lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by stat only so one process does not read the same file twice; the digest is of the bytes.
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def folder_hash(folder: str | Path) -> str:
    """Content hash of a model folder: its config.json and the weight files it loads."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in [folder / "config.json", *weight_files(folder)]:
        stat = path.stat()
        digest.update(f"{path.name}:{_file_digest(str(path), stat.st_size, stat.st_mtime_ns)}\n".encode())
    return digest.hexdigest()


def _source_shapes(files: Iterable[Path]) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors headers (no weights read)."""
    shapes = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            shapes.update({name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()})
    return shapes


def save_full(model: nn.Module, folder: str | Path, state: dict[str, torch.Tensor]) -> None:
    """``save_pretrained``'s layout (config.json + safetensors) for ``state`` (e.g. EMA weights),
    written without building a second model."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_config(folder)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / SAFETENSORS_WEIGHTS_NAME), {"format": "pt"})


def save_adapter(
    model: nn.Module,
    folder: str | Path,
    state: dict[str, torch.Tensor],
    trained: set[str],
    pretrained: str | Path,
) -> None:
    """Write ``model`` as an adapter on ``pretrained`` (a diffusers folder): the ``trained``
    tensors of ``state`` plus every one the pretrained subfolder lacks or shapes otherwise."""
    subfolder, prefix = type(model).adapter_source
    source = Path(pretrained).resolve() / subfolder
    shapes = _source_shapes(weight_files(source))

    def from_source(name: str) -> bool:
        inner = name.removeprefix(prefix)
        return name.startswith(prefix) and shapes.get(inner) == tuple(state[name].shape)

    kept = {name: tensor.contiguous() for name, tensor in state.items() if name in trained or not from_source(name)}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_config(folder)
    save_file(kept, str(folder / ADAPTER_WEIGHTS), {"format": "pt"})
    manifest = {"pretrained": str(source.parent), "subfolder": subfolder, "prefix": prefix, "sha256": folder_hash(source)}
    (folder / ADAPTER_FILE).write_text(json.dumps(manifest, indent=2))


def adapter_manifest(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / ADAPTER_FILE).read_text())


def checked_source(folder: str | Path, pretrained: str | Path | None = None) -> Path:
    """The pretrained subfolder an adapter sits on (``pretrained`` replaces the recorded
    folder), after checking that it exists and holds the weights the adapter was trained on."""
    manifest = adapter_manifest(folder)
    source = Path(pretrained or manifest["pretrained"]) / manifest["subfolder"]
    if not source.is_dir():
        raise PretrainedSourceError(
            f"{folder} is an adapter on {source}, which does not exist: pass the pretrained folder it was trained on"
        )
    found = folder_hash(source)
    if found != manifest["sha256"]:
        raise PretrainedSourceError(
            f"{folder} was trained on other weights than {source} holds (content hash {found[:12]}, "
            f"expected {manifest['sha256'][:12]}): pass the pretrained folder it was trained on"
        )
    return source


def repoint_adapter(folder: str | Path, pretrained: str | Path) -> None:
    """Make an adapter folder name ``pretrained`` as the folder it sits on, once checked to hold its weights."""
    source = checked_source(folder, pretrained)
    manifest = {**adapter_manifest(folder), "pretrained": str(source.parent.resolve())}
    (Path(folder) / ADAPTER_FILE).write_text(json.dumps(manifest, indent=2))


def load_adapter(cls: type, folder: str | Path, pretrained: str | Path | None = None) -> nn.Module:
    """Rebuild the full model of an adapter folder: architecture from its config (on the meta
    device, no memory), pretrained weights from the checked source, adapter weights on top."""
    source, prefix = checked_source(folder, pretrained), adapter_manifest(folder)["prefix"]
    with torch.device("meta"):
        model = cls.from_config(cls.load_config(folder))
    expected = model.state_dict()
    state = {}
    for path in weight_files(source):
        state.update({prefix + name: tensor for name, tensor in load_file(str(path)).items()})
    state.update(load_file(str(Path(folder) / ADAPTER_WEIGHTS)))
    materialise(model, {name: state[name].to(expected[name].dtype) for name in expected if name in state})
    return model.eval()


def materialise(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give a model built on the meta device ``state``'s tensors themselves (no copy)."""
    model.load_state_dict(state, strict=True, assign=True)
    left = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if left:
        raise RuntimeError(f"{type(model).__name__} has tensors outside its state dict: {left[:3]}")


class AdapterLoadingMixin:
    """``from_pretrained`` that also takes an adapter folder (safetensors only: never unpickles).

    Classes set ``adapter_source = (subfolder, prefix)``: the pretrained subfolder their frozen
    weights come from and the state-dict prefix they sit under in the model.
    """

    adapter_source: tuple[str, str]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, pretrained: str | Path | None = None, **kwargs):
        if is_adapter(pretrained_model_name_or_path):
            return load_adapter(cls, pretrained_model_name_or_path, pretrained)
        return super().from_pretrained(pretrained_model_name_or_path, **{**kwargs, "use_safetensors": True})
