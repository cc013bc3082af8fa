"""What every shift step shares: the claimed migration, the hooks, and failure reporting.

A step's operator implements ``run_step``; this base loads the migration from the
DAG run's conf (templated, so ``airflow dags test shift_migration -c '<json>'``
works by hand) and the newest claim a task of the run made (``run_state``), and on
the final failed try tells shift exactly once.

Before a step acts it checks, in this order: did an earlier task of the run end the
migration (skipped, saying how)? does the step apply to this migration at all
(``nothing_to_do``: skipped with the reason)? and where is the migration in shift now
(``check_current``): terminal (completed, failed, canceled, deleted) fails at once
with what to do, before any SQL; moved on since the claim (a cleared task of a step
already done) is skipped with the reason. So a cleared task never re-runs SQL on a
migration shift has finished with, and no task is green without doing its step.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, AirflowTaskTerminated

from shift_provider import run_state
from shift_provider.contract.codes import MACHINE_STATUSES, Status
from shift_provider.contract.models import Migration, MigrationLifecycle
from shift_provider.contract.state_machine import Outcome, rule_for
from shift_provider.exceptions import CopyKilled, MalformedMigrationError, MigrationStepError, ShiftApiError
from shift_provider.hooks.cluster import ShiftClusterHook, apply_overrides
from shift_provider.links import ShiftMigrationLink
from shift_provider.settings import Settings, get_settings

# Errors a retry cannot fix: the migration itself is wrong for the database.
PERMANENT_ERRORS = (MalformedMigrationError, MigrationStepError, AirflowFailException)


class ShiftMigrationOperator(BaseOperator):
    """Base of every shift step operator."""

    template_fields: Sequence[str] = ("migration",)
    template_fields_renderers = {"migration": "json"}
    ui_color = "#dbeafe"
    operator_extra_links = (ShiftMigrationLink(),)

    def __init__(self, *, migration: dict | str = "{{ dag_run.conf | tojson }}",
                 shift_api_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.migration = migration
        self.shift_api_conn_id = shift_api_conn_id
        self._payload: Any = None  # the conf with the run's newest claim: what a new claim merges into

    # --- what a step uses ---------------------------------------------------

    @cached_property
    def settings(self) -> Settings:
        return get_settings()

    @cached_property
    def api(self):
        from shift_provider.hooks.shift_api import ShiftApiHook

        return ShiftApiHook(self.shift_api_conn_id or self.settings.api_conn_id, settings=self.settings)

    def cluster(self, migration: Migration, database: str | None = None) -> ShiftClusterHook:
        return ShiftClusterHook(migration, self.settings, database=database)

    def load_migration(self, context: Any = None) -> Migration:
        """The conf (and the run's newest claim) as a validated Migration, with the settings' overrides applied."""
        payload = self.migration
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except json.JSONDecodeError as exc:
                raise MalformedMigrationError(f"the DAG run conf is not a JSON migration: {exc.msg}") from None
        claim = run_state.latest_claim(context) if context is not None else None
        if claim is not None and isinstance(payload, dict):
            payload = run_state.with_claim(payload, claim)
        self._payload = payload
        return apply_overrides(Migration.from_payload(payload), self.settings)

    def defer_until_staged(self, migration: Migration, act_on: Sequence[Status]) -> None:
        """Defer to the triggerer (no worker slot) until shift shows the migration staged at one of ``act_on``;
        the task then resumes in ``execute_complete``."""
        from datetime import timedelta

        from shift_provider.triggers.migration_wait import MigrationWaitTrigger

        self.defer(
            trigger=MigrationWaitTrigger(
                migration_id=migration.id, act_on=[int(status) for status in act_on],
                shift_api_conn_id=self.shift_api_conn_id or self.settings.api_conn_id,
                poll_interval=self.settings.staged_poll_interval,
                check_interval=self.settings.wait_check_interval),
            method_name="execute_complete",
            timeout=timedelta(days=self.settings.wait_timeout_days),
        )

    def claim(self, context: Any, migration: Migration) -> Migration | None:
        """Unstage the migration for this run; None when another runner got it first."""
        claim = self.api.unstage(migration.id)
        if claim.stolen:
            self.log.warning("migration %s was claimed by another runner: this run leaves it alone", migration.id)
            return None
        run_state.record_claim(context, claim.payload)
        self._payload = run_state.with_claim(self._payload, claim.payload)
        return apply_overrides(Migration.from_payload(self._payload), self.settings)

    # --- before the step: does it apply, and where is the migration now ----------------

    def nothing_to_do(self, context: Any, migration: Migration) -> str | None:
        """Why this step has nothing to do for this migration (it then ends skipped), or None."""
        return None

    def current(self, migration: Migration) -> MigrationLifecycle | None:
        """The migration as shift shows it now; None when it was deleted."""
        try:
            return self.api.get_migration(migration.id)
        except ShiftApiError as exc:
            if exc.status_code == 404:
                return None
            raise

    def check_current(self, context: Any, migration: Migration) -> Migration:
        """Fail at once when shift has finished with the migration; skip when it moved on since the claim."""
        now = self.current(migration)
        refuse_terminal(migration, now)
        assert now is not None
        if now.status != migration.status:
            raise AirflowSkipException(
                f"nothing to do: migration {migration.id} is now at {describe(now.status)} in shift, and "
                f"{self.task_id} acts at {describe(migration.status)}: this step was already done")
        return migration

    # --- the run ------------------------------------------------------------

    def run_step(self, context: Any, migration: Migration) -> Any:
        raise NotImplementedError

    def execute(self, context: Any) -> Any:
        try:
            migration = self.load_migration(context)
        except MalformedMigrationError as exc:
            self._fail_unparsed(exc)
            raise AirflowFailException(str(exc)) from None
        context["ti"].xcom_push(key="migration_id", value=migration.id)
        self.log.info("shift migration %s: `%s`.`%s` on %s:%s, status %s (%d)", migration.id, migration.database,
                      migration.table, migration.host, migration.port, migration.status.name.lower(),
                      migration.status)
        how = run_state.ended(context)
        if how is not None:
            raise AirflowSkipException(f"nothing to do: {how}")
        reason = self.nothing_to_do(context, migration)
        if reason is not None:
            raise AirflowSkipException(f"nothing to do: {reason}")
        try:
            migration = self.check_current(context, migration)
        except AirflowFailException as exc:  # refused before any SQL: the DBA reads why here and in the log
            context["ti"].xcom_push(key="refused", value=str(exc))
            raise
        try:
            return self.run_step(context, migration)
        except AirflowSkipException:  # the step ended with nothing (more) to do, saying why: not a failure
            raise
        except CopyKilled as exc:  # the task was killed: Airflow's own word for it, nothing reported to shift
            raise AirflowTaskTerminated(str(exc)) from None
        except PERMANENT_ERRORS as exc:
            self.report_failure(migration, exc, final=True)
            raise AirflowFailException(str(exc)) from exc
        except Exception as exc:
            final = context["ti"].try_number > (self.retries or 0)
            self.report_failure(migration, exc, final=final)
            raise

    def report_success(self, migration: Migration) -> Any:
        """End the step well: the shift call the state machine's table names for the migration's status
        (``on_success``: next_step, complete, or none for a cancel). Returns shift's answer."""
        calls = {Outcome.NEXT_STEP: self.api.next_step, Outcome.COMPLETE: self.api.complete}
        call = calls.get(rule_for(migration).on_success)
        return call(migration.id) if call is not None else None

    def report_failure(self, migration: Migration, exc: BaseException, *, final: bool) -> None:
        """On the last try, fail (or error) the migration once, unless shift already moved it."""
        if not final:
            self.log.warning("step failed, Airflow will retry: %s", exc)
            return
        message = f"{type(exc).__name__}: {exc}"[:2000] if not isinstance(exc, AirflowFailException) else str(exc)
        if migration.status not in MACHINE_STATUSES:
            self.log.error("not reporting to shift: status %s is a human's to move", migration.status.name.lower())
            return
        outcome = rule_for(migration).on_failure
        try:
            # Only the status is read: a migration whose other fields shift now serves
            # malformed must still be failed, not left at a machine status forever.
            current = current_status(self.api.show(migration.id))
        except Exception as api_exc:  # the API itself is down: nothing more we can do here
            self.log.error("could not report the failure to shift (%s): %s", api_exc, message)
            return
        if current != migration.status:
            self.log.warning("not reporting the failure: shift moved migration %s to %s meanwhile",
                             migration.id, current.name.lower())
            return
        if outcome == Outcome.ERROR and current == Status.COPY_IN_PROGRESS:
            self.log.error("marking migration %s as error (resumable): %s", migration.id, message)
            self.api.error(migration.id, message)
        else:
            self.log.error("marking migration %s as failed: %s", migration.id, message)
            self.api.fail(migration.id, message)

    def tell_shift(self, migration_id: int, text: str, level: int | None = logging.INFO) -> None:
        """Say ``text`` in the migration's shift log (and, unless ``level`` is None, the task log).

        The shift log is what the DBA reads in shift's UI; losing a line of it must never
        fail the step, so a failed append is only logged here.
        """
        if level is not None:
            self.log.log(level, "%s", text)
        try:
            self.api.append_to_file(migration_id, text if text.endswith("\n") else text + "\n")
        except Exception as exc:  # the API may be what failed
            self.log.warning("could not append to the shift log of migration %s: %s", migration_id, exc)

    def keep_status_after(self, migration: Migration, exc: BaseException, step: str) -> None:
        """A retryable failure (the lock bound ran out behind a long transaction, a lost connection) leaves
        the migration where it is, said in its shift log: clearing the task finishes the step, which
        failing or erroring the migration would refuse (or, for a cancel, hide)."""
        self.tell_shift(migration.id, f"{step} failed ({type(exc).__name__}: {exc}); the migration stays at "
                                      f"{describe(migration.status)}: clear the Airflow task to retry, it continues "
                                      "where it stopped", logging.ERROR)

    def _fail_unparsed(self, exc: MalformedMigrationError) -> None:
        # The claim task fails malformed migrations it unstaged; a conf that reaches a
        # step malformed came from a hand-made run, and the runner never touches a
        # migration it did not claim: the task fails, shift is left alone.
        self.log.error("the DAG run conf is not a valid migration; shift is not told: %s", exc)


def describe(status: Status | int | None) -> str:
    """``completed (8)``: how a status is named in messages."""
    if status is None:
        return "deleted"
    try:
        return f"{Status(int(status)).name.lower().replace('_', ' ')} ({int(status)})"
    except ValueError:
        return f"status {status}"


# What a DBA can do about a migration shift has finished with.
WHAT_TO_DO = {
    Status.COMPLETED: "its DDL is applied; file a new migration in shift to change the table again",
    Status.FAILED: "read its error in shift, fix the cause and file a new migration",
    Status.CANCELED: "its copy was cleaned up; file a new migration in shift to try again",
}


def refuse_terminal(migration: Migration, now: MigrationLifecycle | None) -> None:
    """Fail the task at once, before any SQL, when shift has finished with the migration."""
    if now is None:
        raise AirflowFailException(
            f"migration {migration.id} no longer exists in shift (deleted): nothing to do; this run ends here")
    finished = now.status in (Status.COMPLETED, Status.FAILED) or (
        now.status == Status.CANCELED and not now.staged and migration.status != Status.CANCELED)
    if finished:
        detail = f": {now.error_message}" if now.status == Status.FAILED and now.error_message else ""
        raise AirflowFailException(
            f"migration {migration.id} is {describe(now.status)} in shift{detail}; nothing was done, no SQL "
            f"ran. Retrying this task cannot change that: {WHAT_TO_DO[now.status]}")


def current_status(shown: Any) -> Status:
    """The status in a ``show`` answer, whatever else that answer holds."""
    migration = shown.get("migration") if isinstance(shown, dict) else None
    status = migration.get("status") if isinstance(migration, dict) else None
    if isinstance(status, bool) or not isinstance(status, (int, str)) or not str(status).strip().isdigit():
        raise MalformedMigrationError(f"shift's answer has no usable status: {status!r}")
    return Status(int(str(status).strip()))
