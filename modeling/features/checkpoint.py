"""Safe loading of converted feature-network weights.

Weights only ever come from tensors: safetensors files, ``.npz`` archives read
with ``allow_pickle=False``, or ``torch.load(weights_only=True)`` for plain
state dicts saved by ``torch.save``. Pickled modules and TorchScript archives are
refused with a message that says how to convert them once, in a trusted place.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from storage.errors import T2VError

StateDict = dict[str, torch.Tensor]
PathLike = str | os.PathLike

# Bookkeeping buffers whose absence is harmless: BatchNorm recreates them.
_OPTIONAL_SUFFIXES = ("num_batches_tracked",)


_CONVERT_ADVICE = (
    "Pickled modules and TorchScript are never loaded here; convert once where the file is trusted: "
    "`save_file({k: v.contiguous() for k, v in torch.jit.load(p).state_dict().items()}, 'weights.safetensors')` "
    "and map the names (see modeling.features.checkpoint.match_by_order)."
)


class CheckpointError(T2VError, ValueError):
    """A weights file cannot be read or does not fit the network."""


def load_state_dict(path: PathLike) -> StateDict:
    """Read a flat ``{name: tensor}`` mapping from ``path`` without unpickling."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return {name: torch.from_numpy(archive[name].copy()) for name in archive.files}
    # torch.load would hand a TorchScript archive to torch.jit.load even with weights_only.
    if _is_torchscript(path):
        raise CheckpointError(f"{path}: TorchScript archive. {_CONVERT_ADVICE}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for pickled objects
        reason = f"not a plain state dict ({error.__class__.__name__})"
        raise CheckpointError(f"{path}: {reason}. {_CONVERT_ADVICE}") from error
    # Training checkpoints often nest the weights one level down.
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"{path}: expected a mapping of names to tensors")
    return dict(loaded)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())


def save_state_dict(model: nn.Module, path: PathLike) -> None:
    """Write ``model``'s weights as safetensors (the format every loader here accepts)."""
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(path))


def rename_keys(state_dict: StateDict, rename: Callable[[str], str | None]) -> StateDict:
    """Apply ``rename`` to every key; a ``None`` result drops the tensor."""
    renamed = {}
    for name, tensor in state_dict.items():
        new_name = rename(name)
        if new_name is not None:
            renamed[new_name] = tensor
    return renamed


def load_into(model: nn.Module, state_dict: StateDict, source: object = "weights") -> None:
    """Strictly load ``state_dict`` into ``model``, listing every mismatch in one error."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith(_OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k}: {tuple(state_dict[k].shape)} != {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"{source} does not fit {model.__class__.__name__}: "
            f"missing={missing[:8]} unexpected={unexpected[:8]} wrong_shape={wrong_shape[:8]}"
            f" ({len(missing)} missing, {len(unexpected)} unexpected, {len(wrong_shape)} wrong shape)"
        )
    model.load_state_dict(state_dict, strict=False)


def match_by_order(source: StateDict, model: nn.Module) -> StateDict:
    """Rename ``source`` tensors to ``model``'s names by position, checking every shape.

    For checkpoints whose names come from another framework's graph (e.g. the
    TorchScript I3D of StyleGAN-V) but whose layers are stored in the same order
    as ours. Verify the converted file on a known answer before trusting it.
    """
    source_items = [(k, v) for k, v in source.items() if not k.endswith(_OPTIONAL_SUFFIXES)]
    target_items = [(k, v) for k, v in model.state_dict().items() if not k.endswith(_OPTIONAL_SUFFIXES)]
    if len(source_items) != len(target_items):
        raise CheckpointError(f"{len(source_items)} source tensors for {len(target_items)} model tensors")
    matched = {}
    for (source_name, tensor), (target_name, reference) in zip(source_items, target_items):
        if tensor.shape != reference.shape:
            raise CheckpointError(
                f"order mismatch: {source_name} {tuple(tensor.shape)} vs {target_name} {tuple(reference.shape)}"
            )
        matched[target_name] = tensor
    return matched


def seeded_init(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a randomly initialised network that is identical in every process."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
