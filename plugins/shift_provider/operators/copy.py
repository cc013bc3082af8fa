"""Step 3 of a long ALTER: pt-osc copies the rows and stops before the swap.

The copy leaves the shadow table ``_<table>_new_<id>`` and pt-osc's triggers in place
for the rename step. It touches only its own leftovers: another migration's on the same
table make it refuse (see ``leftovers``). While pt-osc runs, this task streams its output (task log, local
file, shift log), publishes progress (XCom and the API), keeps the state document
current, and watches shift: a pause (11), a cancel (9) or the stop file stops pt-osc.

A copy resumes where the last one stopped (pause, stop file, kill, lost worker, transient
fault): pt-osc runs with shift's checkpoint plugin (``ptosc_checkpoint``), which records
after every chunk the boundary reached; the state document carries that checkpoint to
whichever worker copies next, and ``copy_resume`` proves it still usable before pt-osc
resumes after that boundary, reusing the shadow table and triggers. Otherwise the copy
cleans up and starts from the first row, saying why.

Pause and cancel are this task's to finish (``CopyOperator.after_stop``): it claims the
pause, moves shift to paused (12) and defers until a human resumes (it claims the
resume and copies again, in the same task, from the checkpoint) or cancels (it cleans up
and ends skipped). Cleared after a failure with the migration at error (13), it resumes
it in shift first, and the copy goes on from the checkpoint when it is still usable.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from shift_provider import run_state
from shift_provider.contract.codes import Status
from shift_provider.contract.models import Migration
from shift_provider.contract.state_file import load_state, save_state
from shift_provider.engine import instant_ddl
from shift_provider.engine.copy_run import CopyRun
from shift_provider.exceptions import MigrationStepError
from shift_provider.mysql.copy_slot import CopySlot, lock_name
from shift_provider.operators.base import ShiftMigrationOperator, describe, refuse_terminal


class CopyOperator(ShiftMigrationOperator):
    """Run pt-osc ``--execute`` up to (not including) the swap, then move shift to 4 (awaiting rename).

    :param stop_grace_seconds: after TERM, how long pt-osc may take to exit before KILL.
    """

    ui_color = "#fde68a"

    def __init__(self, *, stop_grace_seconds: float = 5.0, **kwargs: Any) -> None:
        # A worker that dies outright (kill -9, lost node) never reaches on_kill: Airflow fails the
        # task after its heartbeat timeout and runs this callback (in the dag-processor) instead.
        kwargs.setdefault("on_failure_callback", hand_back_lost_copy)
        super().__init__(**kwargs)
        self.stop_grace_seconds = stop_grace_seconds
        self._copy: CopyRun | None = None

    def nothing_to_do(self, context: Any, migration: Migration) -> str | None:
        if not migration.uses_ptosc:
            return "a short run, CREATE or DROP: run_ddl runs its DDL"
        if migration.status not in (Status.COPY_IN_PROGRESS, Status.PAUSING, Status.CANCELED):
            return f"this run started at {describe(migration.status)}: nothing to copy"
        return None

    def check_current(self, context: Any, migration: Migration) -> Migration:
        """A cleared copy at error (13) resumes it; a copy staged again (resumed, offered) is claimed."""
        now = self.current(migration)
        refuse_terminal(migration, now)
        assert now is not None
        if now.status == Status.ERROR:
            self.log.info("migration %s is at error (13): clearing its copy is the DBA's resume; resuming it "
                          "in shift (lock_version %s), then claiming it", migration.id, now.lock_version)
            self.api.resume(migration.id, now.lock_version)
            now = self.current(migration)
            assert now is not None
        if now.staged and now.status in (Status.COPY_IN_PROGRESS, Status.PAUSING, Status.CANCELED):
            claimed = self.claim(context, migration)
            if claimed is None:
                raise AirflowSkipException(f"migration {migration.id} was claimed at {describe(now.status)} by "
                                           "another run: that run acts on it, this one ends here")
            return claimed
        if now.status == Status.PAUSED and migration.status == Status.PAUSING:
            self.defer_until_resumed(migration)
        return super().check_current(context, migration)

    def run_step(self, context: Any, migration: Migration) -> Any:
        if not migration.uses_ptosc:
            raise MigrationStepError(f"migration {migration.id} is not a pt-osc ALTER; the copy step does not apply")
        if migration.status != Status.COPY_IN_PROGRESS:  # a pause or cancel this run claimed
            return self.after_stop(context, migration, None)
        skipped = instant_ddl.skip_copy(self, context, migration)  # an instant-capable ALTER copies nothing
        if skipped is not None:
            return skipped
        slot = CopySlot(self.cluster(migration), lock_name(migration))
        holder = slot.take()
        if holder is not None:  # one copy per cluster: wait (deferred) for the running one to end
            waiting = f"another copy runs on cluster {migration.cluster_name or migration.host} (lock {slot.name} " \
                      f"held by connection {holder}): waiting for it to end"
            self.log.info("%s", waiting)
            context["ti"].xcom_push(key="waiting_for", value=waiting)
            from datetime import timedelta

            from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

            self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=max(5.0, 5 * self.settings.control_poll_interval))),
                       method_name="execute_complete")
        try:
            self._copy = CopyRun(self, context, migration, self.stop_grace_seconds)
            result = self._copy.run()
        finally:
            slot.release()
        if result.get("outcome") == "stopped":
            return self.after_stop(context, migration, result["reason"])
        return result

    # -- pause, cancel, hand-back: this task finishes what stopped the copy -----------------

    def after_stop(self, context: Any, migration: Migration, reason: str | None) -> Any:
        """The copy stopped (or never ran) because of a pause, a cancel or the stop file."""
        if reason == "stop_file":
            run_state.mark_ended(context, f"migration {migration.id} was handed back to shift (the runner's stop "
                                          "file); a new run adopts it")
            raise AirflowSkipException("pt-osc stopped by the runner's stop file: migration offered back to shift")
        if reason is not None:  # the copy saw the pause or cancel: claim it for this run
            claimed = self.claim(context, migration)
            if claimed is None:
                raise AirflowSkipException(f"the {reason} of migration {migration.id} was claimed by another run")
            migration = claimed
        from shift_provider.operators.cancel import clean_up_canceled
        from shift_provider.operators.copy_release import wait_for_copy_release

        if migration.status == Status.CANCELED:
            clean_up_canceled(self, migration, 60.0)
            run_state.mark_ended(context, f"migration {migration.id} was canceled in shift; the copy task stopped "
                                          "pt-osc and removed its triggers and shadow table")
            raise AirflowSkipException(f"migration {migration.id} canceled: pt-osc stopped, its triggers and shadow "
                                       "table removed; nothing was copied for a rename")
        if migration.status != Status.PAUSING:
            raise MigrationStepError(f"migration {migration.id} is at {describe(migration.status)}: not the copy's")
        wait_for_copy_release(self, migration.id, 60.0)
        self.report_success(migration)  # paused (12)
        self.log.info("migration %s paused (12): waiting (deferred) for a human to resume or cancel it",
                      migration.id)
        self.defer_until_resumed(migration)

    def defer_until_resumed(self, migration: Migration) -> None:
        self.defer_until_staged(migration, (Status.COPY_IN_PROGRESS, Status.CANCELED))

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        """Woken while paused (claim the resume and copy again, or the cancel and clean up), or to try the
        cluster's copy slot again."""
        self.log.info("woken: %s", event)
        return self.execute(context)

    def on_kill(self) -> None:
        """SIGTERM (mark failed, timeout): kill pt-osc's whole group, hand the migration back."""
        if self._copy is not None:
            self._copy.kill()

    def report_failure(self, migration: Migration, exc: BaseException, *, final: bool) -> None:
        # A killed or stopped copy already told shift (offer) what happened; never also error it.
        if self._copy is not None and self._copy.handed_back:
            self.log.warning("not reporting %s: the copy was already handed back to shift", exc)
            return
        super().report_failure(migration, exc, final=final)


def hand_back_lost_copy(context: Any) -> None:
    """on_failure_callback of the copy task: offer back a copy whose worker vanished without a word.

    Only when shift still shows copy in progress, unstaged, and the state file says the copy is
    running: a copy that ended in any way it could report (done, error, stopped, killed and
    offered) has already told shift. pt-osc died with the task (parent-death signal); the state
    document keeps the checkpoint last synced (at most state_sync_interval old), so the next copy,
    on any worker, resumes from it once proven usable (else it cleans up and starts again).
    """
    from shift_provider.hooks.shift_api import ShiftApiHook
    from shift_provider.settings import get_settings

    conf = context["dag_run"].conf or {}
    migration_id = conf.get("id") if isinstance(conf, dict) else None
    if not isinstance(migration_id, int) or isinstance(migration_id, bool):
        return
    settings = get_settings()
    api = ShiftApiHook(settings.api_conn_id, settings=settings)
    current = api.get_migration(migration_id)
    state = load_state(api, migration_id)
    if current.status != Status.COPY_IN_PROGRESS or current.staged or state.copy_status != "running":
        return
    lost_on = current.run_host
    state.copy_status = "lost"
    save_state(api, state)
    api.append_to_file(migration_id, f"the copy task on {lost_on} failed without handing the migration back "
                                     "(its worker died); offering it back to shift\n")
    api.unpin_run_host(migration_id)  # before the offer: a new copy pins its own host
    api.offer(migration_id)
    logging.getLogger(__name__).warning("copy of migration %s on %s was lost with its worker; offered back",
                                        migration_id, lost_on)


