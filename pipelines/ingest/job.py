"""The ingest job: discover (driver) -> probe + store (Ray Data workers) -> write tables (driver)."""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import pyarrow as pa
import ray

from pipelines.ingest.discover import Candidate, discover, resolve_roots
from pipelines.ingest.probe import RESULT_SCHEMA, probe_batch, split_results
from pipelines.ray_runner import ray_session
from pipelines.settings import Settings
from storage.catalog import Catalog, Manifest
from storage.location import StorageLocation

CANDIDATE_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("source_uri", pa.string()),
        ("path", pa.string()),
        ("data", pa.binary()),
        ("kind", pa.string()),
        ("caption", pa.string()),
        ("label", pa.string()),
        ("reject", pa.string()),
    ]
)


@dataclass
class IngestSummary:
    run_id: str
    sources: list[str]
    candidates: int
    samples_found: int
    quarantined: int
    samples: Manifest
    quarantine: Manifest
    seconds: float
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def new_samples(self) -> int:
        return self.samples.row_counts["added"]

    def rows(self) -> list[dict]:
        """Key figures for the printed summary and the Prefect artifact."""
        return [
            {"metric": "candidates found", "value": self.candidates},
            {"metric": "samples probed ok", "value": self.samples_found},
            {"metric": "new samples", "value": self.new_samples},
            {"metric": "samples total", "value": self.samples.row_counts["total"]},
            {"metric": "quarantined", "value": self.quarantined},
            *({"metric": f"  quarantine: {reason}", "value": n} for reason, n in sorted(self.reasons.items())),
            {"metric": "samples version", "value": self.samples.version},
            {"metric": "files/s", "value": round(self.candidates / max(self.seconds, 1e-9), 2)},
        ]


def run_ingest(settings: Settings, sources: list[str], run_id: str) -> IngestSummary:
    started = time.perf_counter()
    roots = resolve_roots(sources, settings.sources.roots)
    candidates = list(discover(sources, roots))
    location = settings.location()
    with ray_session(settings.ray):
        results = _probe_on_ray(candidates, location, settings.ingest.batch_size)
    samples, quarantine = split_results(results)
    catalog = Catalog(location)
    config_hash = settings.config_hash()
    extra = {"sources": sources}
    samples_manifest = catalog.write("samples", samples, run_id=run_id, config_hash=config_hash, extra=extra)
    quarantine_manifest = catalog.write("quarantine", quarantine, run_id=run_id, config_hash=config_hash, extra=extra)
    reasons: dict[str, int] = {}
    for error in quarantine.column("error").to_pylist():
        reasons[error] = reasons.get(error, 0) + 1
    return IngestSummary(
        run_id=run_id,
        sources=sources,
        candidates=len(candidates),
        samples_found=len(samples),
        quarantined=len(quarantine),
        samples=samples_manifest,
        quarantine=quarantine_manifest,
        seconds=time.perf_counter() - started,
        reasons=reasons,
    )


def _probe_on_ray(candidates: list[Candidate], location: StorageLocation, batch_size: int) -> pa.Table:
    if not candidates:
        return RESULT_SCHEMA.empty_table()
    table = pa.Table.from_pylist([c.as_row() for c in candidates], schema=CANDIDATE_SCHEMA)
    cpus = max(1, int(ray.available_resources().get("CPU", 1)))
    sizes = task_sizes(len(table), cpus, batch_size)
    starts = itertools.accumulate(sizes, initial=0)
    dataset = ray.data.from_arrow([table.slice(start, size) for start, size in zip(starts, sizes)])
    # Ray Data's per-operator CPU reservation held the second probe task back for about a second on
    # 2 CPUs. It exists to share CPUs between pipelined operators; this job is a single map.
    dataset.context.op_resource_reservation_enabled = False
    dataset = dataset.map_batches(
        probe_batch, fn_kwargs={"location": location}, batch_size=None, batch_format="pyarrow", num_cpus=1
    )  # batch_size=None: one input block is one task, so task_sizes decides the load balance
    parts = [batch for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None)]
    return pa.concat_tables(parts).cast(RESULT_SCHEMA) if parts else RESULT_SCHEMA.empty_table()


def task_sizes(total: int, cpus: int, max_size: int) -> list[int]:
    """Files per Ray task, shrinking towards the end (guided self-scheduling).

    Each task takes a share 1 / (2 * cpus) of the files left, capped at ``max_size``: early tasks are
    big enough to amortise per-task overhead, the last ones are single files, so no CPU idles for
    long while another finishes a big batch.
    """
    sizes: list[int] = []
    left = total
    while left:
        size = min(max_size, left, max(1, math.ceil(left / (2 * cpus))))
        sizes.append(size)
        left -= size
    return sizes
