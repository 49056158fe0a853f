"""Run jobs on Ray: a local instance we start and stop, or the cluster at ``ray.address``."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

import ray

from pipelines.settings import RaySettings

log = logging.getLogger(__name__)

# Ray gives a new node a fixed 30 s to register; on a busy 2-core machine one missed it in a full
# test run, and the same start succeeded when tried again.
LOCAL_START_ATTEMPTS = 2
STARTUP_TIMEOUT = "timed out during startup"  # Ray's own words; it raises a bare Exception


@contextlib.contextmanager
def ray_session(settings: RaySettings) -> Iterator[None]:
    """Connect to Ray for the duration of a job.

    An already-initialised Ray (a test session, an outer job) is reused and left running.
    Otherwise we start local Ray, or connect to ``settings.address``, and always shut it
    down afterwards so no Ray processes outlive the job.
    """
    if ray.is_initialized():
        yield
        return
    # Ray prints a lot at INFO; our progress comes from Ray Data's bars and our own summaries.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs: dict = {"logging_level": logging.WARNING, "log_to_driver": True, "configure_logging": True}
    if settings.address:
        log.info("connecting to Ray cluster at %s", settings.address)
        ray.init(address=settings.address, **kwargs)
    else:
        start_local_ray(settings, kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def start_local_ray(settings: RaySettings, kwargs: dict) -> None:
    """Start local Ray, again if its node missed Ray's startup deadline."""
    for attempt in range(1, LOCAL_START_ATTEMPTS + 1):
        try:
            # "local" never attaches to a stray cluster on this machine. The dashboard starts with it:
            # it serves the State API, which Ray Train's placement-group cleaner polls every second
            # and, without it, answered with a warning each time (191 lines in one demo run).
            ray.init(address="local", num_cpus=settings.num_cpus, **kwargs)
            return
        except Exception as error:
            if STARTUP_TIMEOUT not in str(error) or attempt == LOCAL_START_ATTEMPTS:
                raise
            log.warning("local Ray did not start in time (%s); starting it again", error)
            ray.shutdown()
