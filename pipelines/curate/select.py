"""Driver side of curation: apply every filter's rule, dedup the survivors, count the funnel."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.curate.config import CurateConfig
from pipelines.curate.dedup import select_unique
from pipelines.curate.filters import RULES

FUNNEL_STAGES = ("cut", *RULES, "dedup")


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
    config: CurateConfig,
    skipped: dict[str, str],
) -> Selection:
    """``clips`` are annotated clip rows; ``cut_outcomes`` the per-sample rows that made no clip."""
    cut_losses = Counter(r["reason"] if r["status"] == "dropped" else f"quarantined: {r['error']}" for r in cut_outcomes)
    funnel = [FunnelStep("cut", samples_in, len(clips), dict(cut_losses))]
    rows = clips
    for stage in RULES:
        survivors, dropped = [], Counter()
        for row in rows:
            keep, reason = RULES[stage](_decision_view(row), getattr(config, stage))
            if keep:
                survivors.append(row)
            else:
                dropped[reason] += 1
        funnel.append(FunnelStep(stage, len(rows), len(survivors), dict(dropped), skipped.get(stage)))
        rows = survivors
    kept, dedup_step = _dedup(rows, config)
    funnel.append(dedup_step)
    return Selection(kept=kept, funnel=funnel, histograms=score_histograms(clips, config))


def _decision_view(row: dict[str, Any]) -> dict[str, Any]:
    """Size rules judge the source media; a pseudo-video's duration is made up, so it has none."""
    return {**row, "width": row["source_width"], "height": row["source_height"],
            "duration": None if row["pseudo"] else row["duration"]}


def _dedup(rows: list[dict[str, Any]], config: CurateConfig) -> tuple[list[dict[str, Any]], FunnelStep]:
    if not rows:
        return [], FunnelStep("dedup", 0, 0)
    # prefer real footage over pseudo-videos, then longer clips
    priority = [(0.0 if r["pseudo"] else 1e6) + r["duration"] for r in rows]
    hashes = np.array([r["phash"] for r in rows], dtype=np.uint64)
    result = select_unique([r["id"] for r in rows], hashes, config.dedup, priority=priority)
    kept = [row for row, keep in zip(rows, result.keep) if keep]
    skipped = "CLIP dedup needs embeddings; perceptual hash used" if config.dedup.method == "clip" else None
    step = FunnelStep("dedup", len(rows), len(kept), {"near_duplicate": int((~result.keep).sum())} if len(kept) < len(rows) else {}, skipped)
    return kept, step


# score column -> the rule that reads it, for the histograms users pick thresholds from
HISTOGRAM_SCORES = {"motion_score": "motion", "nsfw_score": "nsfw", "toxicity_score": "toxicity",
                    "watermark_score": "watermark", "aesthetic_score": "aesthetic"}


def score_histograms(clips: list[dict[str, Any]], config: CurateConfig, bins: int = 10) -> list[dict[str, Any]]:
    """Per score, clips per equal-width bin and how many of them its rule drops at the current
    thresholds: what another threshold would keep or drop, read off without a rerun."""
    rows = []
    for column, stage in HISTOGRAM_SCORES.items():
        scored = [r for r in clips if r.get(column) is not None and not np.isnan(r[column])]
        if not scored:
            continue
        values = np.array([r[column] for r in scored])
        edges = np.histogram_bin_edges(values, bins=bins)
        which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
        dropped = np.array([not RULES[stage](_decision_view(r), getattr(config, stage))[0] for r in scored])
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
