"""``t2v serve``: the curate, train, evaluate, ratings-summary and catalog-maintenance flows as Prefect
deployments on cron schedules.

Schedules come from the ``schedules:`` section of the settings. Prefect's scheduler service
does not run inside its ephemeral server, so without ``PREFECT_API_URL`` we start a local
Prefect server (``prefect server start`` on loopback, a child process stopped on exit) and
serve against it; with ``PREFECT_API_URL`` set we register with that server instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Iterator

from prefect import Flow
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Interval
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.catalog import catalog_maintenance_flow
from flows.curate import curate_flow, curate_new_samples_flow
from flows.evaluate import evaluate_flow
from flows.rate import ratings_summary_flow
from flows.train import stages_for, train_flow
from pipelines.evaluate.job import EvalConfig
from pipelines.settings import Settings, load_job_config

TAGS = ["t2v"]
SERVER_START_SECONDS = 180


def deployments(settings: Settings) -> list[RunnerDeployment]:
    """One deployment per scheduled flow; parameters carry the settings they run with."""
    schedules = settings.schedules
    out: list[RunnerDeployment] = []

    def add(flow: Flow, name: str, schedule: Cron | Interval, **parameters: Any) -> None:
        out.append(flow.to_deployment(
            name=name, schedule=schedule, tags=TAGS, entrypoint_type=EntrypointType.MODULE_PATH,
            parameters={"settings": settings.model_dump(mode="json"), **parameters},
        ))

    if schedules.curate:
        add(curate_flow, "t2v-curate", Cron(schedules.curate.cron, timezone=schedules.timezone))
    if schedules.new_samples_seconds:
        add(curate_new_samples_flow, "t2v-curate-new-samples", Interval(dt.timedelta(seconds=schedules.new_samples_seconds)))
    if schedules.train:
        stages_for(schedules.train.stage, settings)  # an unknown stage fails now, not at 3 am
        add(train_flow, "t2v-train", Cron(schedules.train.cron, timezone=schedules.timezone), stage=schedules.train.stage)
    if schedules.evaluate:
        config = load_job_config(EvalConfig, schedules.evaluate.spec, {})
        add(evaluate_flow, "t2v-evaluate", Cron(schedules.evaluate.cron, timezone=schedules.timezone),
            config=config.model_dump(mode="json"))
    if schedules.ratings:
        add(ratings_summary_flow, "t2v-ratings-summary", Cron(schedules.ratings.cron, timezone=schedules.timezone),
            runs=schedules.ratings.runs)
    if schedules.catalog:
        add(catalog_maintenance_flow, "t2v-catalog-maintenance",
            Cron(schedules.catalog.cron, timezone=schedules.timezone), keep_days=schedules.catalog.keep_days)
    return out


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """The API to serve against: ``PREFECT_API_URL`` when set, else a local server we start and stop."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    with tempfile.NamedTemporaryFile(prefix="t2v-prefect-server-", suffix=".log", delete=False) as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
        )
    try:
        _wait_healthy(url, server, log.name)
        os.environ["PREFECT_API_URL"] = url  # flow-run processes the runner starts read it
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, log: str) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the local Prefect server exited with code {server.returncode}; see {log}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(1)
    raise RuntimeError(f"the local Prefect server did not answer within {SERVER_START_SECONDS} s; see {log}")
