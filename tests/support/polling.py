"""Waiting for something to become true: the one poll loop of the suite.

Timeouts here are generous bounds on what a loaded 2-core CI machine needs, never
measurements: a test that waits asserts the outcome, not how long it took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout: float = 60, what: str = "the condition",
             interval: float = 0.1, before_each: Callable[[], None] | None = None,
             retry_errors: bool = False) -> Any:
    """Poll ``predicate()`` until it is truthy and return its value; AssertionError naming ``what`` after ``timeout`` s.

    ``before_each`` runs before every poll (a deployment's crash check); with ``retry_errors`` an exception from
    the predicate counts as "not yet" (a component still starting) and the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        if before_each is not None:
            before_each()
        try:
            value = predicate()
        except Exception as exc:
            if not retry_errors:
                raise
            last_exc, value = exc, None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                                 + (f" (last error: {last_exc})" if last_exc else ""))
        time.sleep(interval)
