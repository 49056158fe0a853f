"""Checkpoints and exports under ``runs/<name>/<stage>/`` on the storage root.

A checkpoint is a folder ``checkpoints/step_00000100/`` holding the trainable weights
and the EMA (safetensors), optimizer and LR-schedule state, and ``state.json`` (step,
data position). ``checkpoints/latest.json`` names the newest complete folder and is
written last, atomically: a run killed mid-save (even with ``kill -9``) resumes from
the previous one. State dicts go through ``torch.distributed.checkpoint.state_dict``,
which gathers full tensors under FSDP and strips DDP's ``module.`` prefix, so one code
path serves DDP, FSDP and a single process.

RNG: every step reseeds torch from (seed, step, rank) (see ``loop.step_seed``), so the
restored step restores the random streams too, exactly.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow.fs as pafs
import torch
from diffusers import ModelMixin
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file as save_safetensors_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from modeling.adapters import save_adapter, save_full
from pipelines.train.ema import Ema
from storage.errors import T2VError
from storage.location import TEMP_PREFIX, StorageLocation, read_bytes, write_atomic, write_atomic_file

LATEST = "latest.json"
FULL_STATE = StateDictOptions(full_state_dict=True, cpu_offload=True)


@dataclass(frozen=True)
class RunPaths:
    """Where one stage of a named run keeps its files on the storage root."""

    location: StorageLocation
    name: str
    stage: str

    def path(self, *parts: str) -> str:
        return self.location.path("runs", self.name, self.stage, *parts)

    @property
    def export(self) -> str:
        return self.path("export")


@dataclass(frozen=True)
class CheckpointState:
    step: int
    samples_seen: int  # data position: the run has consumed samples 0..samples_seen-1
    directory: str


def latest_checkpoint(paths: RunPaths) -> CheckpointState | None:
    try:
        pointer = json.loads(read_bytes(paths.location, paths.path("checkpoints", LATEST)))
    except (FileNotFoundError, OSError):
        return None
    return CheckpointState(pointer["step"], pointer["samples_seen"], pointer["directory"])


def kept_checkpoints(paths: RunPaths) -> list[CheckpointState]:
    """Every complete checkpoint folder of the stage (``state.json`` is written last), oldest first."""
    states = []
    for folder in (info.base_name for info in _step_folders(paths)):
        try:
            state = json.loads(read_bytes(paths.location, paths.path("checkpoints", folder, "state.json")))
        except (FileNotFoundError, OSError):
            continue  # a save killed before it finished
        states.append(CheckpointState(state["step"], state["samples_seen"], folder))
    return states


class CheckpointWeightsError(T2VError):
    """A checkpoint's weights do not belong to the network they are loaded into."""


def load_trained_weights(paths: RunPaths, state: CheckpointState, network: nn.Module, ema: bool) -> None:
    """Overwrite ``network`` (the stage's exported network, e.g. a cascade's base UNet) with the
    weights training changed up to checkpoint ``state``: the EMA's when ``ema``, as the export takes them."""
    directory = paths.path("checkpoints", state.directory)
    weights = load_safetensors(read_bytes(paths.location, f"{directory}/{'ema' if ema else 'trainable'}.safetensors"))
    # Checkpoints name weights as the objective holds them: "<network attribute>.<name in the network>".
    named = {name.split(".", 1)[1]: tensor for name, tensor in weights.items()}
    unexpected = network.load_state_dict(named, strict=False).unexpected_keys
    if unexpected:
        raise CheckpointWeightsError(f"{directory}: {len(unexpected)} weights are not in the {type(network).__name__} "
                                     f"they are loaded into (e.g. {unexpected[0]!r}): a checkpoint of another network")


def trainable_names(model: nn.Module) -> set[str]:
    return {name for name, p in _unwrap(model).named_parameters() if p.requires_grad}


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def _torch_save(obj: Any, local: str) -> None:
    with open(local, "wb") as handle:  # a handle: torch names the archive after a path, and ".tmp-*" is no name
        torch.save(obj, handle)


def save_checkpoint(
    paths: RunPaths,
    state: CheckpointState,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_schedule: Any,
    ema: Ema | None,
    *,
    is_writer: bool,
    keep: int,
) -> None:
    """Collective (every rank calls it, FSDP gathers); only the writer rank writes."""
    trainable = trainable_names(model)
    weights = {k: v for k, v in get_model_state_dict(model, options=FULL_STATE).items() if k in trainable}
    optim_state = get_optimizer_state_dict(model, optimizer, options=FULL_STATE)
    if not is_writer:
        return
    location, directory = paths.location, paths.path("checkpoints", state.directory)
    # Each file streams to disk as it is serialised: at SD width the optimizer state alone is
    # ~1.5 GB, which an in-memory buffer would add to the peak.
    files = {
        "trainable.safetensors": lambda local: save_safetensors_file({k: v.contiguous() for k, v in weights.items()}, local),
        "optimizer.pt": lambda local: _torch_save({"optimizer": optim_state, "lr_schedule": lr_schedule.state_dict()}, local),
    }
    if ema is not None:
        files["ema.safetensors"] = lambda local: save_safetensors_file(ema.state_dict(), local)
    for name, fill in files.items():
        write_atomic_file(location, f"{directory}/{name}", fill)
    state_json = {"step": state.step, "samples_seen": state.samples_seen, "time": time.time()}
    write_atomic(location, f"{directory}/state.json", json.dumps(state_json).encode())
    pointer = {"step": state.step, "samples_seen": state.samples_seen, "directory": state.directory}
    write_atomic(location, paths.path("checkpoints", LATEST), json.dumps(pointer).encode())
    _prune(paths, keep)


def _step_folders(paths: RunPaths) -> list[pafs.FileInfo]:
    """The ``step_*`` folders under ``checkpoints/``, oldest first (zero-padded names sort by step)."""
    selector = pafs.FileSelector(paths.path("checkpoints"), allow_not_found=True)
    infos = paths.location.filesystem.get_file_info(selector)
    return sorted((i for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith("step_")),
                  key=lambda i: i.base_name)


def _prune(paths: RunPaths, keep: int) -> None:
    for old in _step_folders(paths)[:-keep]:
        paths.location.filesystem.delete_dir(old.path)
    # Only the writer rank writes here and it has finished: temp files are from a killed save.
    everything = paths.location.filesystem.get_file_info(pafs.FileSelector(paths.path("checkpoints"), recursive=True))
    for leftover in (i.path for i in everything if i.type == pafs.FileType.File and i.base_name.startswith(TEMP_PREFIX)):
        paths.location.filesystem.delete_file(leftover)


def load_checkpoint(
    paths: RunPaths,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_schedule: Any,
    ema: Ema | None,
) -> CheckpointState | None:
    """Restore the latest checkpoint into the (wrapped) model and optimizer; None if there is none."""
    state = latest_checkpoint(paths)
    if state is None:
        return None
    location, directory = paths.location, paths.path("checkpoints", state.directory)
    weights = load_safetensors(read_bytes(location, f"{directory}/trainable.safetensors"))
    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, strict=False))
    saved = torch.load(io.BytesIO(read_bytes(location, f"{directory}/optimizer.pt")), weights_only=True)
    set_optimizer_state_dict(model, optimizer, saved["optimizer"], options=StateDictOptions(full_state_dict=True))
    lr_schedule.load_state_dict(saved["lr_schedule"])
    if ema is not None:
        ema.load_state_dict(load_safetensors(read_bytes(location, f"{directory}/ema.safetensors")))
    return state


@contextmanager
def local_folder(location: StorageLocation, path: str) -> Iterator[Path]:
    """A local folder to write into that ends up at ``path`` on the storage root (uploaded for object stores)."""
    if location.is_local:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    tmp = tempfile.mkdtemp(prefix="t2v-upload-")
    try:
        yield Path(tmp)
        pafs.copy_files(tmp, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=location.filesystem)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def fetched_folder(location: StorageLocation, path: str) -> Iterator[Path]:
    """A local copy of the folder at ``path`` on the storage root (the folder itself when local)."""
    if location.is_local:
        yield Path(path)
        return
    tmp = tempfile.mkdtemp(prefix="t2v-download-")
    try:
        pafs.copy_files(path, tmp, source_filesystem=location.filesystem, destination_filesystem=pafs.LocalFileSystem())
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_stage(
    paths: RunPaths,
    model: nn.Module,
    part: ModelMixin,
    prefix: str,
    ema: Ema | None,
    pretrained: str | None,
    *,
    is_writer: bool,
) -> str:
    """Save the stage's network (EMA weights when given): as an adapter on ``pretrained``
    holding only the weights training changed or added, or whole when ``pretrained`` is None
    or the part has no pretrained source (the prior).

    Collective like :func:`save_checkpoint`: the full state dict is gathered on every rank,
    then the writer saves its tensors directly (no second copy of the model).
    """
    full = get_model_state_dict(model, options=FULL_STATE)
    if ema is not None:
        full.update(ema.state_dict())
    trained = {name.removeprefix(prefix) for name in trainable_names(model) if name.startswith(prefix)}
    if is_writer:
        state = {name.removeprefix(prefix): tensor for name, tensor in full.items() if name.startswith(prefix)}
        # A rerun may switch layouts: a stale adapter.json would shadow a full export.
        paths.location.filesystem.delete_dir_contents(paths.export, missing_dir_ok=True)
        with local_folder(paths.location, paths.export) as folder:
            if pretrained and hasattr(type(part), "adapter_source"):
                save_adapter(part, folder, state, trained, pretrained)
            else:
                save_full(part, folder, state)
    return paths.export
