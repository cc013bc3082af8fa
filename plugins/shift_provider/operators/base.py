"""What every shift step shares: the claimed migration, the hooks, and failure reporting.

A step's operator implements ``run_step``; this base loads the migration from the
DAG run's conf (templated, so ``airflow dags test shift_migration -c '<json>'``
works by hand), and on the final failed try tells shift exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk import BaseOperator

from shift_provider.codes import MACHINE_STATUSES, Status
from shift_provider.exceptions import MalformedMigrationError, MigrationStepError
from shift_provider.hooks.cluster import ShiftClusterHook, apply_overrides
from shift_provider.links import ShiftMigrationLink
from shift_provider.models import Migration
from shift_provider.settings import Settings, get_settings
from shift_provider.state_machine import Outcome, rule_for

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

    def load_migration(self) -> Migration:
        """The conf as a validated Migration, with the settings' overrides applied."""
        payload = self.migration
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except json.JSONDecodeError as exc:
                raise MalformedMigrationError(f"the DAG run conf is not a JSON migration: {exc.msg}") from None
        return apply_overrides(Migration.from_payload(payload), self.settings)

    # --- the run ------------------------------------------------------------

    def run_step(self, context: Any, migration: Migration) -> Any:
        raise NotImplementedError

    def execute(self, context: Any) -> Any:
        try:
            migration = self.load_migration()
        except MalformedMigrationError as exc:
            self._fail_unparsed(exc)
            raise AirflowFailException(str(exc)) from None
        context["ti"].xcom_push(key="migration_id", value=migration.id)
        self.log.info("shift migration %s: `%s`.`%s` on %s:%s, status %s (%d)", migration.id, migration.database,
                      migration.table, migration.host, migration.port, migration.status.name.lower(),
                      migration.status)
        try:
            return self.run_step(context, migration)
        except PERMANENT_ERRORS as exc:
            self.report_failure(migration, exc, final=True)
            raise AirflowFailException(str(exc)) from exc
        except Exception as exc:
            final = context["ti"].try_number > (self.retries or 0)
            self.report_failure(migration, exc, final=final)
            raise

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

    def _fail_unparsed(self, exc: MalformedMigrationError) -> None:
        # The claim task fails malformed migrations it unstaged; a conf that reaches a
        # step malformed came from a hand-made run, and the runner never touches a
        # migration it did not claim: the task fails, shift is left alone.
        self.log.error("the DAG run conf is not a valid migration; shift is not told: %s", exc)


def current_status(shown: Any) -> Status:
    """The status in a ``show`` answer, whatever else that answer holds."""
    migration = shown.get("migration") if isinstance(shown, dict) else None
    status = migration.get("status") if isinstance(migration, dict) else None
    if isinstance(status, bool) or not isinstance(status, (int, str)) or not str(status).strip().isdigit():
        raise MalformedMigrationError(f"shift's answer has no usable status: {status!r}")
    return Status(int(str(status).strip()))


class RejectMigrationOperator(ShiftMigrationOperator):
    """The branch for a conf no step may act on (malformed, or a human's status)."""

    ui_color = "#fee2e2"

    def run_step(self, context: Any, migration: Migration) -> Any:
        raise AirflowFailException(
            f"migration {migration.id} at status {migration.status.name.lower()} is not the runner's to act on"
        )
