"""The human waits of a migration's run: ``await_start`` and ``await_rename``.

Each defers to the triggerer (``MigrationWaitTrigger``), holding no worker slot, until
shift shows the migration staged at the status a human moves it to (copy in progress
after a start, rename in progress after a rename): then it claims it for the run and
the next task acts. A cancel ends the wait too: this task claims it and cleans up
what the copy left, and the rest of the run ends skipped. Completed, failed or deleted
end the run with the reason. Clearing the task re-reads shift and does the same.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from shift_provider import run_state
from shift_provider.contract.codes import Status
from shift_provider.contract.models import Migration
from shift_provider.operators.base import ShiftMigrationOperator, describe, refuse_terminal
from shift_provider.operators.cancel import clean_up_canceled


class AwaitHumanOperator(ShiftMigrationOperator):
    """Defer until a human moves the migration from ``waits_at`` to ``acts_on`` (staged), then claim it.

    :param after: the claimed status of the run's step before this wait (preparing for the start,
        copy in progress for the rename); a run that started later has nothing to wait for here.
    :param waits_at: the statuses a human still has to move the migration from.
    :param acts_on: the status this wait claims for the next task.
    """

    ui_color = "#ede9fe"

    def __init__(self, *, after: Status, waits_at: tuple[Status, ...], acts_on: Status,
                 release_timeout: float = 60.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.after = Status(after)
        self.waits_at = tuple(Status(s) for s in waits_at)
        self.acts_on = Status(acts_on)
        self.release_timeout = release_timeout

    def nothing_to_do(self, context: Any, migration: Migration) -> str | None:
        if self.acts_on == Status.RENAME_IN_PROGRESS and not migration.uses_ptosc:
            return "a short run, CREATE or DROP has no rename to wait for"
        if migration.status != self.after:
            return (f"this run reached {describe(migration.status)} without waiting here: "
                    f"nothing to wait for before {describe(self.acts_on)}")
        return None

    def check_current(self, context: Any, migration: Migration) -> Migration:
        return migration  # run_step reads shift itself, at every wake-up

    def run_step(self, context: Any, migration: Migration) -> Any:
        now = self.current(migration)
        if now is not None and now.staged and now.status in (self.acts_on, Status.CANCELED):
            claimed = self.claim(context, migration)
            if claimed is None:
                raise AirflowSkipException(f"migration {migration.id} was claimed at {describe(now.status)} by "
                                           "another run: that run acts on it, this one ends here")
            if claimed.status == Status.CANCELED:
                result = clean_up_canceled(self, claimed, self.release_timeout)
                run_state.mark_ended(context, f"migration {migration.id} was canceled in shift while awaiting "
                                              f"{describe(self.acts_on)}; {self.task_id} cleaned up")
                self.log.info("canceled while waiting: cleaned up (%s)", result)
                return result
            self.log.info("migration %s is at %s: claimed for this run", migration.id, describe(claimed.status))
            return {"claimed": int(claimed.status)}
        refuse_terminal(migration, now)
        assert now is not None
        if now.status not in self.waits_at:
            if now.status == self.acts_on:  # at the awaited status but not staged: someone else has it
                raise AirflowSkipException(f"migration {migration.id} is at {describe(now.status)} and another "
                                           "run claimed it: that run acts on it, this one ends here")
            raise AirflowFailException(f"migration {migration.id} is at {describe(now.status)} in shift: not a "
                                       f"status {self.task_id} waits at ({', '.join(map(describe, self.waits_at))})")
        context["ti"].xcom_push(key="waiting_for", value=f"a human to move migration {migration.id} from "
                                                         f"{describe(now.status)} to {describe(self.acts_on)}")
        self.log.info("migration %s is at %s: waiting (deferred, on the triggerer) for %s or a cancel",
                      migration.id, describe(now.status), describe(self.acts_on))
        self.defer_until_staged(migration, (self.acts_on, Status.CANCELED))

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        """Woken by the trigger: read shift again and act (claim, clean up, end, or wait again)."""
        self.log.info("woken: %s", event)
        return self.execute(context)
