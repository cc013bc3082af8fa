"""The deployment fixtures: one real topology (``tests.support.deployment.Deployment``) per test module.

A module may define ``TIMINGS`` (a dict it fills); it is printed with the components'
start-up timings when the module's topology stops.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.support.deployment import WORKERS, Deployment


@pytest.fixture(scope="module")
def deployment(request):
    timings = getattr(request.module, "TIMINGS", {})
    started = time.monotonic()
    # SHIFT_DEPLOY_KEEP=1 keeps the workdir (every component's log) for a look afterwards.
    topology = Deployment(keep_workdir=bool(os.environ.get("SHIFT_DEPLOY_KEEP"))).start()
    timings["startup"] = round(time.monotonic() - started, 1)
    try:
        yield topology
        topology.assert_healthy()  # still all up at the end of the module
    finally:
        crashed = [c.name for c in topology.crashed()]
        t = time.monotonic()
        topology.stop()
        timings["teardown"] = round(time.monotonic() - t, 1)
        print(f"\ndeployment in {topology.workdir} timings: {timings} components: {topology.timings} "
              f"crashed: {crashed or 'none'}")


@pytest.fixture
def both_workers(deployment):
    """Both workers up and taking tasks (a test that stopped one leaves it to the next, or to teardown);
    every other component still running before and after the test."""
    deployment.assert_healthy()
    restore_workers(deployment)
    yield deployment
    deployment.assert_healthy()


def restore_workers(deployment: Deployment) -> None:
    for name in WORKERS:
        if not deployment.components[name].alive():
            deployment.components[name].stop(timeout=5)
            deployment.start_worker(name)
        deployment.set_consuming(name, True)
