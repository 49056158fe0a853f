"""Driver side of curation: every stage's ``keep`` on the stored rows, in list order, and the funnel."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from pipelines.curate.stage import Stage


@dataclass
class FunnelStep:
    stage: str
    rows_in: int
    rows_out: int
    dropped: dict[str, int] = field(default_factory=dict)
    skipped_reason: str | None = None


@dataclass
class Selection:
    kept: list[dict[str, Any]]
    funnel: list[FunnelStep]
    histograms: list[dict[str, Any]] = field(default_factory=list)


def select_clips(
    samples_in: int,
    cut_outcomes: list[dict[str, Any]],
    clips: list[dict[str, Any]],
    stages: Sequence[Stage],
    skipped: dict[str, str],
) -> Selection:
    """``clips`` are annotated clip rows; ``cut_outcomes`` the per-sample rows that made no clip.

    Each stage that drops judges the rows the stages before it kept: cheap rules first, as listed.
    """
    cut_losses = Counter(r["reason"] if r["status"] == "dropped" else f"quarantined: {r['error']}" for r in cut_outcomes)
    funnel = [FunnelStep("cut", samples_in, len(clips), dict(cut_losses))]
    rows = clips
    for stage in stages:
        if not stage.drops:
            continue
        reasons = stage.drop_reasons(rows)
        survivors = [row for row, reason in zip(rows, reasons) if reason is None]
        dropped = Counter(reason for reason in reasons if reason is not None)
        funnel.append(FunnelStep(stage.name, len(rows), len(survivors), dict(dropped), skipped.get(stage.name)))
        rows = survivors
    return Selection(kept=rows, funnel=funnel, histograms=score_histograms(clips, stages))


def score_histograms(clips: list[dict[str, Any]], stages: Sequence[Stage], bins: int = 10) -> list[dict[str, Any]]:
    """Per score a stage stores, clips per equal-width bin and how many of them the stage's ``keep``
    drops at the current thresholds: what another threshold would keep or drop, read off without a rerun."""
    rows = []
    for stage in stages:
        for column in (name for name, dtype in stage.columns if stage.drops and pa.types.is_floating(dtype)):
            scored = [r for r in clips if r.get(column) is not None and not np.isnan(r[column])]
            if not scored:
                continue
            values = np.array([r[column] for r in scored])
            edges = np.histogram_bin_edges(values, bins=bins)
            which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
            dropped = np.array([stage.keep(r) is not None for r in scored])
            for b in range(bins):
                rows.append({"score": column, "from": round(float(edges[b]), 4), "to": round(float(edges[b + 1]), 4),
                             "clips": int((which == b).sum()), "dropped_now": int((dropped & (which == b)).sum())})
    return rows


def funnel_rows(funnel: list[FunnelStep]) -> list[dict[str, Any]]:
    return [
        {"id": f"{order:02d}-{step.stage}", "order": order, "stage": step.stage, "rows_in": step.rows_in,
         "rows_out": step.rows_out, "dropped": json.dumps(step.dropped, sort_keys=True),
         "skipped_reason": step.skipped_reason}
        for order, step in enumerate(funnel)
    ]
