"""The curate job: an ordered list of stages (:mod:`pipelines.curate.stage`) over the clips the cut makes.

samples -> cut (Ray tasks: decode, split, transcode, store, then the ``cut`` stages on the frames in
memory) -> the ``annotate`` stages (Ray actors) -> every stage's ``keep`` in list order (driver) -> tables.

Cut and annotate are one streaming Ray Data pipeline: the annotate actors load their models
while the first videos are cut and score clips as soon as a video's clips are stored, so no
CPU waits at a stage barrier. Both write their results as parts under ``work/curate/`` keyed by
the compute fields of the stages that made them (thresholds excluded: they only decide what is
kept), so a killed run resumes where it stopped, a changed setting recomputes only what it affects,
and a threshold change re-applies the rules to the stored scores without Ray, models or decoding.
The ``clips`` and ``funnel`` tables get a new version holding exactly this run's result; failures
are upserted into ``quarantine``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import ray

from pipelines.curate.annotate import BATCH as ANNOTATE_BATCH, Annotator, annotation_schema
from pipelines.curate.blur import BlurFilter
from pipelines.curate.captions import LabelCaptioner, LLMParaphraser, VLMCaptioner
from pipelines.curate.config import CurateConfig
from pipelines.curate.cut import STAGE as CUT_STAGE, cut_batch, cut_schema
from pipelines.curate.dedup import DedupStage
from pipelines.curate.filters import AestheticFilter, NSFWFilter, SizeFilter, ToxicityFilter, WatermarkFilter
from pipelines.curate.motion import MotionFilter
from pipelines.curate.select import FunnelStep, funnel_rows, select_clips
from pipelines.curate.stage import Stage
from pipelines.curate.workdir import StageParts
from pipelines.ray_runner import ray_session
from pipelines.settings import Settings
from storage.catalog import Catalog, Manifest
from storage.ids import stable_id
from storage.schemas import CLIPS


# The pipeline: a stage is registered by being here. Each stage's process runs where it says
# (runs_in), in this order; its keep judges, in this order too, the rows the stages before kept:
# cheap rules first, captions before the toxic-text filter reads them, dedup last.
STAGES: tuple[type[Stage], ...] = (
    SizeFilter, MotionFilter, BlurFilter,
    LabelCaptioner, LLMParaphraser, VLMCaptioner, NSFWFilter, ToxicityFilter, WatermarkFilter, AestheticFilter,
    DedupStage,
)


def build_stages(config: CurateConfig) -> list[Stage]:
    return [stage.from_config(config) for stage in STAGES]


# Another annotate actor starts once this many blocks (each one video's clips) wait per actor, not
# at the first one waiting (Ray Data's default): on 2 CPUs that second actor's start-up cost more
# than it saved.
QUEUED_BLOCKS_TO_GROW = 2


@dataclass
class CurateSummary:
    run_id: str
    samples_version: int
    samples: int
    resumed_samples: int
    clips: Manifest
    funnel: list[FunnelStep]
    skipped: dict[str, str]
    quarantined: int
    seconds: float
    video_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    histograms: list[dict] = field(default_factory=list)  # per score: clips and drops per bin

    def funnel_table(self) -> list[dict]:
        return [
            {"stage": s.stage, "in": s.rows_in, "out": s.rows_out,
             "dropped": ", ".join(f"{k}: {v}" for k, v in sorted(s.dropped.items())) or "-",
             "note": s.skipped_reason or ""}
            for s in self.funnel
        ]

    def histogram_table(self) -> list[dict]:
        """One row per score: clips per bin, and how many of them the current threshold drops."""
        scores: dict[str, list[dict]] = {}
        for row in self.histograms:
            scores.setdefault(row["score"], []).append(row)
        return [
            {"score": name, "range": f"{bins[0]['from']:g} .. {bins[-1]['to']:g}",
             "clips per bin": " ".join(str(b["clips"]) for b in bins),
             "dropped now": " ".join(str(b["dropped_now"]) for b in bins)}
            for name, bins in scores.items()
        ]

    def rows(self) -> list[dict]:
        return [
            {"metric": "samples (version)", "value": f"{self.samples} (v{self.samples_version})"},
            {"metric": "samples resumed from an earlier run", "value": self.resumed_samples},
            {"metric": "clips kept", "value": self.clips.row_counts["total"]},
            {"metric": "clips version", "value": self.clips.version},
            {"metric": "quarantined", "value": self.quarantined},
            {"metric": "clips/s", "value": round(self.clips.row_counts["total"] / max(self.seconds, 1e-9), 2)},
            *({"metric": f"skipped: {name}", "value": reason} for name, reason in sorted(self.skipped.items())),
        ]


def _hash(*parts: object) -> str:
    """Key of stored results: only the fields that change what is computed, so a threshold (a
    ``keep_fields`` entry) never invalidates scores or clips."""
    text = json.dumps([p.compute_fields() if hasattr(p, "compute_fields") else p for p in parts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_curate(settings: Settings, run_id: str, samples_version: int | None = None) -> CurateSummary:
    started = time.perf_counter()
    config = settings.curate
    location = settings.location()
    catalog = Catalog(location)
    samples_manifest = catalog.manifest("samples", samples_version)
    catalog.pin("samples", samples_manifest.version, run_id)  # the clips name it as their source: vacuum keeps it
    samples = catalog.read("samples", samples_manifest.version)

    stages = build_stages(config)
    cut_stages = [s for s in stages if s.runs_in == "cut"]
    annotate_stages = [s for s in stages if s.runs_in == "annotate"]
    # Clip ids hash what makes a clip; each group's parts add the keys of the stages that scored them,
    # so a changed frame stage re-cuts into the same clips and their model scores stay valid.
    clip_salt = _hash(config.split, config.transcode, config.pseudo_video)
    cut_key = _hash(clip_salt, *(s.key() for s in cut_stages))
    annotate_key = _hash(clip_salt, *(s.key() for s in annotate_stages))
    cut_parts = StageParts(location, "curate", f"cut-{cut_key}", key="sample_id")
    annotate_parts = StageParts(location, "curate", f"annotate-{annotate_key}", key="id")
    outcome_schema = cut_schema(cut_stages)

    done_samples = cut_parts.done_keys()
    sample_ids = set(samples.column("id").to_pylist())
    todo = samples.filter(pc.invert(pc.is_in(samples.column("id"), value_set=_strings(done_samples))))
    # clips cut by an earlier, killed run whose annotation never finished
    cut_before = _latest_per_sample(cut_parts.read(outcome_schema), sample_ids)
    unannotated = _unannotated_clips(cut_before, annotate_parts.done_keys())
    if len(todo) or len(unannotated):
        # nothing to cut or score (a threshold change): the rules below run on stored scores, no Ray
        with ray_session(settings.ray):
            _run_stages(todo, unannotated, location, config, cut_stages, annotate_stages, cut_parts, annotate_parts,
                        clip_salt)
    outcomes = _latest_per_sample(cut_parts.read(outcome_schema), sample_ids)
    clip_rows = outcomes.filter(pc.equal(outcomes.column("status"), "clip"))
    skipped = {name: reason for stage in stages for name, reason in stage.skipped().items()}

    annotations = {r["id"]: r for r in annotate_parts.read(annotation_schema(annotate_stages)).to_pylist()}
    clips = [{**row, **annotations[row["id"]]} for row in clip_rows.to_pylist()]
    others = [r for r in outcomes.to_pylist() if r["status"] != "clip"]
    selection = select_clips(len(samples), others, clips, stages, skipped)

    quarantine = [
        {"id": stable_id(CUT_STAGE, r["sample_id"]), "stage": CUT_STAGE, "source_uri": r["source_uri"],
         "error": r["error"] or "Error", "reason": r["reason"], "sample_id": r["sample_id"]}
        for r in others if r["status"] == "quarantine"
    ]
    extra = {"samples_version": samples_manifest.version}
    config_hash = settings.config_hash()
    kept = pa.Table.from_pylist([{name: row[name] for name in CLIPS.names} for row in selection.kept], schema=CLIPS)
    clips_manifest = catalog.write("clips", kept, run_id=run_id,
                                   config_hash=config_hash, extra=extra, mode="replace")
    catalog.write("funnel", funnel_rows(selection.funnel), run_id=run_id, config_hash=config_hash, extra=extra,
                  mode="replace")
    if quarantine:
        catalog.write("quarantine", quarantine, run_id=run_id, config_hash=config_hash, extra=extra)
    return CurateSummary(
        run_id=run_id,
        samples_version=samples_manifest.version,
        samples=len(samples),
        resumed_samples=len(done_samples & set(samples.column("id").to_pylist())),
        clips=clips_manifest,
        funnel=selection.funnel,
        skipped=skipped,
        quarantined=len(quarantine),
        seconds=time.perf_counter() - started,
        video_seconds=float(sum(r["duration"] or 0.0 for r in samples.to_pylist() if r["kind"] == "video")),
        histograms=selection.histograms,
    )


def _strings(values: set[str]) -> pa.Array:
    return pa.array(sorted(values), pa.string())


def _unannotated_clips(outcomes: pa.Table, annotated: set[str]) -> pa.Table:
    clips = outcomes.filter(pc.equal(outcomes.column("status"), "clip"))
    return clips.filter(pc.invert(pc.is_in(clips.column("id"), value_set=_strings(annotated))))


def _run_stages(samples: pa.Table, clips: pa.Table, location, config: CurateConfig, cut_stages: list[Stage],
                annotate_stages: list[Stage], cut_parts: StageParts, annotate_parts: StageParts, salt: str) -> None:
    """Cut ``samples`` and annotate their clips, plus ``clips`` left unannotated, in one streaming pass."""
    inputs = []
    if len(samples):
        # one sample per task: videos vary a lot in length, so small tasks balance the CPUs
        inputs.append(ray.data.from_arrow([samples.slice(i, 1) for i in range(len(samples))]).map_batches(
            cut_batch,
            fn_kwargs={"location": location, "config": config, "stages": cut_stages, "parts": cut_parts, "salt": salt},
            batch_size=1,
            batch_format="pyarrow",
            num_cpus=1,
        ))
    if len(clips):
        inputs.append(ray.data.from_arrow([clips.slice(i, ANNOTATE_BATCH) for i in range(0, len(clips), ANNOTATE_BATCH)]))
    # Annotators claim no CPU of their own: they share the cut tasks' CPUs, the first one starting
    # (and loading its models) while the first videos are cut, then scoring clips while later ones
    # are cut. More start only when clips queue up: each costs a process and a model load.
    max_actors = max(1, min(int(ray.available_resources().get("CPU", 1)), len(samples) + len(clips)))
    dataset = inputs[0].union(*inputs[1:]) if len(inputs) > 1 else inputs[0]
    annotated = dataset.map_batches(
        Annotator,
        fn_constructor_kwargs={"location": location, "stages": annotate_stages, "parts": annotate_parts},
        batch_size=None,  # each block as it comes: the annotator slices it into batches itself
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max_actors,
                                           max_tasks_in_flight_per_actor=QUEUED_BLOCKS_TO_GROW + 1),
        num_cpus=0,
    )
    context = annotated.context
    # Ray Data holds back a share of the CPUs for each operator; the annotate actors need none, so
    # the share only kept cut tasks waiting (on 2 CPUs they ran one at a time for the first seconds).
    context.op_resource_reservation_enabled = False
    context.autoscaling_config = dataclasses.replace(
        context.autoscaling_config, actor_pool_util_upscaling_threshold=QUEUED_BLOCKS_TO_GROW + 0.5)
    annotated.materialize()


def _latest_per_sample(outcomes: pa.Table, sample_ids: set[str]) -> pa.Table:
    """Outcomes of the samples in this version; a sample cut twice (a retried task) counts once."""
    rows, seen = [], {}
    for row in outcomes.to_pylist():
        if row["sample_id"] in sample_ids:
            seen.setdefault(row["sample_id"], []).append(row)
    for sample_id in sorted(seen):
        unique = {r["id"] or r["status"]: r for r in seen[sample_id]}
        rows += list(unique.values())
    return pa.Table.from_pylist(rows, schema=outcomes.schema)
