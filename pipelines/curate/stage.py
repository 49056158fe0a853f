"""The one contract every curation stage follows.

A stage owns one block of the ``curate`` config (a :class:`~pipelines.curate.config.StageConfig`:
the fields that change what it computes, and ``keep_fields`` that only decide what is kept).
The job builds each stage of its list from that block and then, per worker, calls

- ``setup()`` once (models load there; never called for a skipped stage),
- ``process(batch)`` on batches of clips: returns the batch with the stage's ``columns`` added,
  which are stored under ``work/curate/`` keyed by the compute fields of the stages that made them,
- ``keep(row)`` on every stored clip row, once all scores are in: ``None`` keeps the row, a string
  is the drop reason the funnel counts. It reads stored columns only, so a threshold change
  re-applies every ``keep`` and computes nothing.

``runs_in`` says where ``process`` runs:

- ``"cut"``: in the cut task, on each clip's frames while they are in memory (batch columns
  ``frames``: per row the clip's uint8 RGB frames ``(h, w, 3)`` as stored; ``fps``), so cheap frame
  scores never decode a video twice;
- ``"annotate"``: in the annotate actors, on keyframes decoded from the stored clip (``keyframes``,
  see :mod:`pipelines.curate.frames`) and the text columns (``caption``, ``label``);
- ``"select"``: nothing to compute; ``keep`` reads what the cut stored (the size rules).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Mapping, Sequence

import numpy as np
import pyarrow as pa

from pipelines.curate.config import CurateConfig, StageConfig

FRAMES = "frames"  # the cut stages' batch column: per row, the clip's frames


class Stage:
    name: ClassVar[str]  # its step in the funnel and its entry in the run's skipped list
    block: ClassVar[str]  # its config block: ``curate.<block>``
    config_class: ClassVar[type[StageConfig]]
    runs_in: ClassVar[Literal["cut", "annotate", "select"]]
    columns: ClassVar[tuple[tuple[str, pa.DataType], ...]] = ()  # what process() adds, stored
    drops: ClassVar[bool] = True  # False: only adds columns (captions), no funnel step
    reads_keyframes: ClassVar[bool] = False  # the annotate actor decodes config.num_keyframes for it

    def __init__(self, config: StageConfig | dict | None = None):
        self.config = self.config_class.model_validate(config or {})

    @classmethod
    def from_config(cls, config: CurateConfig) -> "Stage":
        return cls(getattr(config, cls.block))

    @classmethod
    def skip_reason(cls, config: Any) -> str | None:
        """Why a stage with this config does not run (from the config alone, no model loaded)."""
        return None

    @property
    def skipped_reason(self) -> str | None:
        return self.skip_reason(self.config)

    def skipped(self) -> dict[str, str]:
        """Name -> reason for the run summary, for this stage and any optional part of it."""
        reason = self.skipped_reason
        return {self.name: reason} if reason else {}

    def key(self) -> list:
        """What this stage's stored columns depend on: its compute fields, never its thresholds."""
        return [self.name, self.config.compute_fields()]

    def setup(self) -> None:
        """Load what ``process`` needs, once per worker."""

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return batch

    def keep(self, row: Mapping[str, Any]) -> str | None:
        return None

    def drop_reasons(self, rows: Sequence[Mapping[str, Any]]) -> list[str | None]:
        """``keep`` of each row; a stage that judges rows against each other (dedup) overrides this."""
        return [self.keep(row) for row in rows]


def set_up(stages: Sequence[Stage]) -> list[Stage]:
    """The stages ready to process: each one that runs is set up, a skipped one is left as it is."""
    for stage in stages:
        if stage.skipped_reason is None:
            stage.setup()
    return list(stages)


def stored_schema(stages: Sequence[Stage]) -> list[tuple[str, pa.DataType]]:
    """The columns the stages store, in stage order, each once (the captioners share theirs)."""
    fields: dict[str, pa.DataType] = {}
    for stage in stages:
        for name, dtype in stage.columns:
            fields.setdefault(name, dtype)
    return list(fields.items())


def score(row: Mapping[str, Any], column: str) -> float | None:
    """A finite score from the row, or None when its stage did not score it (missing / skipped)."""
    value = row.get(column)
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value
