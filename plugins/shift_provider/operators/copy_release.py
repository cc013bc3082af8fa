"""Has the running copy let go of the migration? Asked before a pause or a cancel acts.

The copy task watches shift and stops pt-osc when it sees a pause (11) or a cancel (9);
whoever finishes the pause or the cancel first makes sure that happened, or that no copy
runs (run_host unpinned, the state says it stopped, or its worker stopped saving state),
so a human resume never finds a pt-osc still running and a cleanup never races a copy.
``ReleaseWaitingOperator`` is the base of the steps that begin that way.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from shift_provider.contract.codes import Status
from shift_provider.contract.models import Migration, MigrationLifecycle
from shift_provider.contract.state_file import MigrationState, load_state
from shift_provider.exceptions import MigrationStepError
from shift_provider.operators.base import ShiftMigrationOperator, describe


def copy_release_reason(current: MigrationLifecycle, state: MigrationState, stale_after: float) -> str | None:
    """Why no copy holds the migration any more, or None while one still runs."""
    if current.run_host is None:
        return "run_host is unpinned"
    if state.copy_status != "running":
        return f"the copy's state is {state.copy_status or 'empty'!r}"
    try:
        updated = datetime.fromisoformat(state.updated_at)
    except ValueError:
        return None
    age = (datetime.now(timezone.utc) - updated).total_seconds()
    if age > stale_after:
        return f"the copy on {current.run_host} has not saved its state for {age:.0f}s: its worker is gone"
    return None


def wait_for_copy_release(operator: ShiftMigrationOperator, migration_id: int, timeout: float) -> MigrationState:
    """Poll shift until no copy holds the migration; raise (retryably) after ``timeout`` seconds."""
    settings = operator.settings
    stale_after = max(3 * settings.state_sync_interval, 30.0)
    deadline = time.monotonic() + timeout
    while True:
        current = operator.api.get_migration(migration_id)
        state = load_state(operator.api, migration_id)
        reason = copy_release_reason(current, state, stale_after)
        if reason is not None:
            operator.log.info("no copy runs for migration %s: %s", migration_id, reason)
            return state
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"the copy of migration {migration_id} on {current.run_host} did not stop within {timeout:.0f}s "
                f"(state {state.copy_status!r}, updated {state.updated_at})")
        operator.log.info("waiting for the copy on %s to stop (state %r)", current.run_host, state.copy_status)
        time.sleep(settings.control_poll_interval)


class ReleaseWaitingOperator(ShiftMigrationOperator):
    """A step that acts at ``acts_at`` once no copy holds the migration (``after_release``).

    :param release_timeout: seconds to wait for a running copy to stop before failing this try.
    """

    acts_at: Status

    def __init__(self, *, release_timeout: float = 60.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.release_timeout = release_timeout

    def run_step(self, context: Any, migration: Migration) -> Any:
        if migration.status != self.acts_at:
            raise MigrationStepError(f"migration {migration.id} is at {describe(migration.status)}, "
                                     f"not {describe(self.acts_at)}")
        return self.after_release(context, migration)

    def after_release(self, context: Any, migration: Migration) -> Any:
        raise NotImplementedError
