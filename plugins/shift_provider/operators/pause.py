"""Step 11 (pausing): wait until the running copy let go of the migration, then paused (12).

The copy task itself watches shift and stops pt-osc when it sees 11; this step only
makes sure that happened (``copy_release``) before telling shift it is paused,
so a human resume never finds a pt-osc still running. The shadow table and
triggers stay: the resumed copy goes on from its checkpoint (see copy_resume), or cleans them up
and starts again when the checkpoint cannot be proven usable.
"""

from __future__ import annotations

from typing import Any

from shift_provider.contract.codes import Status
from shift_provider.contract.models import Migration
from shift_provider.operators.copy_release import ReleaseWaitingOperator, wait_for_copy_release


class PauseOperator(ReleaseWaitingOperator):
    """Status 11 claimed: wait for the copy to stop, then next_step -> 12 (paused)."""

    ui_color = "#fef3c7"
    acts_at = Status.PAUSING

    def after_release(self, context: Any, migration: Migration) -> Any:
        state = wait_for_copy_release(self, migration.id, self.release_timeout)
        self.report_success(migration)
        self.log.info("migration %s paused; shadow table %r and triggers %s kept until it is resumed or canceled",
                      migration.id, state.new_table, state.triggers)
        return {"outcome": "paused", "copy_status": state.copy_status}
