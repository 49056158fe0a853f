"""Starting local Ray: with the State API that Ray Train polls, and once more when its node misses
Ray's fixed startup deadline."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import ray

from pipelines.ray_runner import start_local_ray
from pipelines.settings import RaySettings

# The words Ray raises when a new node does not register in time (ray/_private/node.py).
TIMED_OUT = "The current node timed out during startup. This could happen because some of the raylet failed to startup or the GCS has become overloaded."


def test_local_ray_serves_the_state_api_that_ray_trains_cleaner_polls():
    # A fresh process: this one may hold the session's Ray, which ray_session would reuse. The
    # query must find this session's own actor: without a dashboard of its own, the State API
    # client falls back to port 8265, where another Ray instance's dashboard may answer.
    code = textwrap.dedent("""
        import ray
        from ray.util.state import list_actors
        from pipelines.ray_runner import ray_session
        from pipelines.settings import RaySettings

        @ray.remote
        class Probe:
            def ping(self):
                return 1

        with ray_session(RaySettings(num_cpus=1)):
            probe = Probe.options(name="t2v-state-api-probe").remote()
            ray.get(probe.ping.remote())
            found = list_actors(address=ray.get_runtime_context().gcs_address,
                                filters=[("name", "=", "t2v-state-api-probe")])
            assert len(found) == 1, found
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture
def starts(monkeypatch):
    """Ray's init and shutdown recorded, failing as each test says: the session's own Ray stays up."""
    calls, failures = [], []

    def init(**kwargs):
        calls.append(("init", kwargs["address"], kwargs["num_cpus"]))
        if failures:
            raise failures.pop(0)

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    return calls, failures


def test_a_node_that_missed_the_startup_deadline_is_started_again(starts):
    calls, failures = starts
    failures.append(Exception(TIMED_OUT))
    start_local_ray(RaySettings(num_cpus=1), {})
    assert calls == [("init", "local", 1), "shutdown", ("init", "local", 1)]


def test_a_second_miss_and_any_other_error_are_raised(starts):
    calls, failures = starts
    failures.extend([Exception(TIMED_OUT), Exception(TIMED_OUT)])
    with pytest.raises(Exception, match="timed out during startup"):
        start_local_ray(RaySettings(num_cpus=1), {})
    assert calls == [("init", "local", 1), "shutdown", ("init", "local", 1)]
    calls.clear()
    failures.append(ValueError("num_cpus must be positive"))
    with pytest.raises(ValueError):
        start_local_ray(RaySettings(num_cpus=1), {})
    assert calls == [("init", "local", 1)]
