"""Step 9 (canceled): stop the copy if one runs, then remove everything it left, and nothing else.

Only this migration's own leftovers go: its shadow table (``_<table>_new_<id>``, or
the one its state file recorded) and the triggers writing into it. Another migration's
triggers or shadow table on the same table are left alone and said in the log (an
instant-path cancel used to remove them). The triggers go first (so writes stop
reaching the shadow table), then the shadow table moves to pending drops (or is
dropped when trash is off). Each sub-step checks the database before acting, so a
retry or a second run is harmless, and a cancel with no copy ever run has nothing to do.
"""

from __future__ import annotations

from typing import Any

from shift_provider import ptosc
from shift_provider.contract.codes import Status
from shift_provider.contract.models import Migration
from shift_provider.contract.state_file import save_state
from shift_provider.engine import leftovers
from shift_provider.mysql import schema_ops
from shift_provider.mysql.bounded_ddl import LockBound
from shift_provider.operators.base import PERMANENT_ERRORS, ShiftMigrationOperator
from shift_provider.operators.copy_release import ReleaseWaitingOperator, wait_for_copy_release


class CancelOperator(ReleaseWaitingOperator):
    """Status 9 claimed: wait for a running copy to stop, drop pt-osc's triggers, retire the shadow table."""

    ui_color = "#fee2e2"
    acts_at = Status.CANCELED

    def after_release(self, context: Any, migration: Migration) -> Any:
        return clean_up_canceled(self, migration, self.release_timeout)

    def report_failure(self, migration: Migration, exc: BaseException, *, final: bool) -> None:
        """A retryable failure (the lock bound ran out behind a long transaction, a lost connection) leaves
        the migration canceled, said in its shift log: clearing the task finishes the cleanup, whereas
        failed (10) would hide that it was canceled."""
        if isinstance(exc, PERMANENT_ERRORS):
            super().report_failure(migration, exc, final=final)
            return
        self.keep_status_after(migration, exc, "cancel cleanup")


def clean_up_canceled(operator: ShiftMigrationOperator, migration: Migration,
                      release_timeout: float) -> dict[str, Any]:
    """Wait for a running copy to stop, then remove this migration's triggers and shadow table (idempotent).

    Used by the cancel step and by every task of a run that claims a cancel (a wait, the copy).
    """
    state = wait_for_copy_release(operator, migration.id, release_timeout)
    state.database, state.table = migration.database, migration.table
    new_table = state.new_table or ptosc.shadow_table_name(migration.table, migration.id)
    hook = operator.cluster(migration)
    mine, others = leftovers.split(hook, migration.database, migration.table, migration.id, new_table)
    if others:
        operator.log.warning("leaving alone what is not this migration's on `%s`.`%s`: %s", migration.database,
                             migration.table,
                             ", ".join(f"{o.describe()} (migration {o.owner or 'unknown'})" for o in others))

    # Triggers first: with them gone, no write reaches the shadow table any more.
    triggers = [x.name for x in mine if x.kind == "trigger"]
    if triggers:
        schema_ops.drop_triggers(hook, migration.database, triggers, LockBound.of(operator.settings), operator.log)
        operator.log.info("dropped this migration's pt-osc triggers %s on `%s`.`%s`", triggers, migration.database,
                          migration.table)
    else:
        operator.log.info("no pt-osc triggers of this migration on `%s`.`%s`", migration.database, migration.table)
    state.triggers = []
    state.mark("cancel_triggers_dropped")

    # The shadow table holds a partial copy nobody will use: pending drops (or dropped).
    shadows = [x.name for x in mine if x.kind == "shadow table"]
    for shadow in shadows:
        where = schema_ops.retire_table(hook, operator.settings, migration.database, shadow, log=operator.log)
        state.retired_to = where
        operator.log.info("shadow table `%s`.`%s` -> %s", migration.database, shadow, where)
    if not shadows:
        operator.log.info("no shadow table of this migration in `%s`", migration.database)
    state.mark("cancel_shadow_retired")
    if state.copy_status == "running":
        state.copy_status = "stopped"
    save_state(operator.api, state)
    operator.log.info("migration %s canceled and cleaned up: nothing of the copy is left on `%s`.`%s`",
                      migration.id, migration.database, migration.table)
    return {"outcome": "canceled", "triggers_dropped": triggers, "shadow_table": state.retired_to or None}
