"""`t2v serve`: deployments with the configured cron schedules, visible through the Prefect client,
against the server at PREFECT_API_URL or a local server it starts itself."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from prefect.client.orchestration import PrefectClient

from pipelines.settings import SettingsError, load_settings

SCHEDULES = {
    "timezone": "Europe/Paris",
    "curate": {"cron": "0 2 * * *"},
    "train": {"cron": "0 3 * * 6", "stage": "base"},
    "new_samples_seconds": 120,
}
EXPECTED = {
    "t2v-curate": ("cron", "0 2 * * *"),
    "t2v-train": ("cron", "0 3 * * 6"),
    "t2v-curate-new-samples": ("interval", 120.0),
}


@pytest.mark.parametrize("schedules, message", [
    ({"curate": {"cron": "61 2 * * *"}}, "schedules.curate.cron: invalid cron string '61 2 * * *'"),
    ({"timezone": "Mars/Olympus"}, "schedules.timezone: unknown time zone 'Mars/Olympus'"),
    ({"evaluate": {"cron": "0 * * * *"}}, "schedules.evaluate.spec: Field required"),
])
def test_bad_schedules_name_the_key(schedules, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(overrides={"schedules": schedules}, environ={})


def _serve(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--config", str(config)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


async def _deployments(url: str) -> dict:
    async with PrefectClient(api=url) as client:
        return {d.name: d for d in await client.read_deployments() if d.name.startswith("t2v-")}


def _wait_for_deployments(url: str, server: subprocess.Popen, log: Path, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-3000:]
        found = asyncio.run(_deployments(url))
        if set(found) >= set(EXPECTED):
            return found
        time.sleep(2)
    raise TimeoutError(log.read_text()[-3000:])


def _schedule(deployment) -> tuple[str, object]:
    schedule = deployment.schedules[0].schedule
    if getattr(schedule, "cron", None):
        assert schedule.timezone == "Europe/Paris"
        return "cron", schedule.cron
    return "interval", schedule.interval.total_seconds()


def _stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGINT)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@pytest.fixture
def serve_config(tmp_path) -> Path:
    config = tmp_path / "t2v.yaml"
    config.write_text(yaml.safe_dump({"storage": {"root": str(tmp_path / "data")}, "schedules": SCHEDULES}))
    return config


def _check(found: dict, root: Path) -> None:
    assert {name: _schedule(found[name]) for name in EXPECTED} == EXPECTED
    assert found["t2v-train"].parameters["stage"] == "base"
    assert found["t2v-curate"].parameters["settings"]["storage"]["root"] == str(root)


@pytest.mark.usefixtures("prefect_server")
def test_serve_registers_cron_schedules_with_the_prefect_server_at_the_api_url(serve_config, tmp_path):
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    server = _serve(serve_config, {**os.environ, "PREFECT_API_URL": url}, tmp_path / "serve.log")
    try:
        _check(_wait_for_deployments(url, server, tmp_path / "serve.log"), tmp_path / "data")
    finally:
        _stop(server)
    assert server.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]


async def _scheduled_runs(url: str, deployment_id) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async with PrefectClient(api=url) as client:
        return await client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def test_serve_without_an_api_url_starts_a_local_server_that_schedules(serve_config, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = "2"  # default 60: the test would wait a minute
    log = tmp_path / "serve.log"
    server = _serve(serve_config, env, log)
    try:
        deadline = time.monotonic() + 240
        while not (match := re.search(r"serving on (http://127\.0\.0\.1:(\d+)/api)", log.read_text())):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        url, port = match.group(1), int(match.group(2))
        found = _wait_for_deployments(url, server, log)
        _check(found, tmp_path / "data")
        # the server's scheduler turns the cron schedule into scheduled runs (02:00 Paris time)
        while not (runs := asyncio.run(_scheduled_runs(url, found["t2v-curate"].id))):
            assert time.monotonic() < deadline, "no scheduled runs"
            time.sleep(2)
        assert all(run.state_name == "Scheduled" for run in runs)
        assert {run.expected_start_time.astimezone(ZoneInfo("Europe/Paris")).hour for run in runs} == {2}
    finally:
        _stop(server)
    with pytest.raises(ConnectionRefusedError):  # the local server stopped with `t2v serve`
        socket.create_connection(("127.0.0.1", port), timeout=5)
