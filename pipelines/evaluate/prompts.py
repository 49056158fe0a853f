"""Prompt sets for evaluation: UCF-101 class templates, caption files (MSR-VTT style), user prompt files,
and the shapes world's prompts (every colour and direction, for the weight-free shapes judge).

Every set is a list of :class:`EvalPrompt` in a fixed order, so the seed of prompt ``i``
(``base_seed + i``) and hence each generated clip is reproducible whatever the number
of workers.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipelines.shapes.world import shape_prompts
from pipelines.ucf101 import UCF101_CLASSES, ucf101_prompt
from storage.errors import T2VError

PromptSetKind = Literal["ucf101", "msrvtt", "prompts", "shapes"]
# Every (colour, direction) pair once: 16 prompts, each colour and each direction four times.
SHAPES_REPEATS = 1
# Keys that hold the text in caption files: MSR-VTT's JSON uses "caption", others "text"/"prompt".
_TEXT_KEYS = ("caption", "prompt", "text", "sentence")


class PromptFileError(T2VError, ValueError):
    """A prompt or caption file is missing, empty or has no recognisable text field."""


@dataclass(frozen=True)
class EvalPrompt:
    text: str
    label: str | None = None  # UCF-101 class, or the caption's video id


def ucf101_prompt_set() -> list[EvalPrompt]:
    """One template sentence per UCF-101 class, in the dataset's class order (Make-A-Video's zero-shot protocol)."""
    return [EvalPrompt(ucf101_prompt(name), name) for name in UCF101_CLASSES]


def read_prompt_file(path: str | Path) -> list[EvalPrompt]:
    """Prompts from ``.txt`` (one per line, ``#`` comments), ``.csv`` (a caption/prompt/text column,
    optional ``video_id``/``label``), ``.json`` (MSR-VTT's ``{"sentences": [...]}``, a list of
    strings, or a list of objects) or ``.jsonl``."""
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"{path}: prompt file does not exist")
    readers = {".txt": _read_txt, ".csv": _read_csv, ".json": _read_json, ".jsonl": _read_jsonl}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise PromptFileError(f"{path}: unsupported prompt file type; use {', '.join(readers)}")
    prompts = [prompt for prompt in reader(path) if prompt.text.strip()]
    if not prompts:
        raise PromptFileError(f"{path}: no prompts found")
    return prompts


def prompt_set(kind: PromptSetKind, path: str | Path | None = None, limit: int | None = None) -> list[EvalPrompt]:
    """The prompts of an evaluation protocol; caption and prompt files need ``path``. ``limit`` keeps the first ones."""
    if kind == "ucf101":
        prompts = ucf101_prompt_set() if path is None else read_prompt_file(path)
    elif kind == "shapes":
        prompts = [EvalPrompt(text) for text in shape_prompts(SHAPES_REPEATS)] if path is None else read_prompt_file(path)
    elif path is None:
        raise PromptFileError(f"protocol {kind!r} needs a prompt or caption file")
    else:
        prompts = read_prompt_file(path)
    return prompts[:limit] if limit is not None else prompts


def _read_txt(path: Path) -> list[EvalPrompt]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [EvalPrompt(line) for line in lines if line and not line.startswith("#")]


def _read_csv(path: Path) -> list[EvalPrompt]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [_from_record(row, path) for row in csv.DictReader(handle)]


def _read_json(path: Path) -> list[EvalPrompt]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        # MSR-VTT annotation files keep the captions under "sentences" (with "video_id").
        data = data.get("sentences", data.get("captions", data.get("prompts")))
    if not isinstance(data, list):
        raise PromptFileError(f"{path}: expected a list of captions or a 'sentences' list")
    return [EvalPrompt(item) if isinstance(item, str) else _from_record(item, path) for item in data]


def _read_jsonl(path: Path) -> list[EvalPrompt]:
    lines = (line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return [_from_record(json.loads(line), path) for line in lines]


def _from_record(record: dict[str, Any], path: Path) -> EvalPrompt:
    for key in _TEXT_KEYS:
        if key in record:  # an empty caption is dropped later, a missing text field is an error
            label = record.get("video_id", record.get("label"))
            return EvalPrompt(str(record[key] or "").strip(), None if label is None else str(label))
    raise PromptFileError(f"{path}: a record has none of the text fields {', '.join(_TEXT_KEYS)}: {record}")
