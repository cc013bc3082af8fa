"""Status 0, preparing: prove the migration can run, record where it starts, then hand it to a human.

Five operators, one job each, ordered by the DAG: validate the final insert, dry-run
the DDL, detect whether the ALTER is instant on this server, collect the table's
starting stats, advance to awaiting approval (1).
Nothing here changes the database, except a CREATE's dry run, which creates the
object and drops it again.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from typing import Any

from shift_provider import ptosc
from shift_provider.contract.codes import TABLE_TYPES, Action, Mode, Status
from shift_provider.contract.models import Migration
from shift_provider.engine import final_insert_check, foreign_keys, instant_ddl, leftovers, trigger_safety, unique_keys
from shift_provider.engine.final_insert import check_shape
from shift_provider.exceptions import MigrationStepError, PtOscError
from shift_provider.mysql import admission, bounded_ddl, schema_ops
from shift_provider.mysql.bounded_ddl import LockBound
from shift_provider.mysql.sql import ParsedDDL, parse_ddl, qualified
from shift_provider.operators.base import ShiftMigrationOperator
from shift_provider.ptosc.process import ChildProcess


def checked_ddl(migration: Migration) -> ParsedDDL:
    """Parse the DDL and refuse it unless it does what the migration says, to the migration's object.

    Runs before any SQL: a DDL naming another table or database (or hiding a second
    statement), or reaching beyond the table (``admission``), must never reach the server.
    """
    try:
        parsed = parse_ddl(migration.ddl_statement)
    except ValueError as exc:
        raise MigrationStepError(f"ddl_statement cannot be run: {exc}") from None
    if parsed.table != migration.table:
        raise MigrationStepError(
            f"ddl_statement changes table {parsed.table!r} but the migration is for table {migration.table!r}"
        )
    if parsed.database is not None and parsed.database != migration.database:
        raise MigrationStepError(
            f"ddl_statement names database {parsed.database!r} but the migration runs on database "
            f"{migration.database!r}"
        )
    if migration.action is not None and parsed.action != migration.action:
        raise MigrationStepError(
            f"ddl_statement is a {parsed.action.name} but the migration's action is {migration.action.name}"
        )
    if migration.mode is not None and parsed.mode != migration.mode:
        raise MigrationStepError(
            f"ddl_statement works on a {parsed.mode.name} but the migration's mode is {migration.mode.name}"
        )
    out_of_scope = admission.reason(parsed, migration.ddl_statement, migration.database)
    if out_of_scope:
        raise MigrationStepError(f"ddl_statement is out of scope: {out_of_scope}")
    return parsed


def describe(migration: Migration) -> str:
    return f"`{migration.database}`.`{migration.table}`"


def require_preparing(migration: Migration) -> None:
    if migration.status != Status.PREPARING:
        raise MigrationStepError(
            f"prepare runs at status preparing (0); migration {migration.id} is at "
            f"{migration.status.name.lower()} ({int(migration.status)})"
        )


class PrepareStep(ShiftMigrationOperator):
    """A sub-step of prepare: it acts only in a run that started at preparing (0)."""

    def nothing_to_do(self, context: Any, migration: Migration) -> str | None:
        if migration.status != Status.PREPARING:
            return (f"this run started at {migration.status.name.lower()} ({int(migration.status)}); "
                    "the migration was prepared by an earlier run")
        return None


class ValidateFinalInsertOperator(PrepareStep):
    """Prove the final insert is one plain INSERT that fits the table as the DDL leaves it, changing no data.

    See ``final_insert_check``: PREPARE on every engine, a rolled-back trial only where
    a rollback undoes it, against an empty altered copy when it targets the altered table.
    """

    ui_color = "#e0f2fe"

    def run_step(self, context: Any, migration: Migration) -> None:
        require_preparing(migration)
        parsed = checked_ddl(migration)
        sql = migration.final_insert_sql
        if sql is None:
            self.log.info("migration %s has no final insert; nothing to validate", migration.id)
            return
        check_shape(sql)
        self.log.info("final insert has the right shape: %s", sql)
        hook = self.cluster(migration)
        if parsed.action == Action.CREATE and schema_ops.object_type(hook, migration.database,
                                                                     migration.table) is None:
            # The object it probably inserts into does not exist yet: the dry run tries it while it does.
            self.log.info("%s is not created yet; the dry run tries the final insert while it exists",
                          describe(migration))
            return
        clause = parsed.alter_clause if parsed.action == Action.ALTER else None
        self.log.info("%s", final_insert_check.check(hook, migration, sql, clause, LockBound.of(self.settings)))


class DryRunOperator(PrepareStep):
    """Prove the DDL runs: pt-osc --dry-run for ALTERs, create-and-drop for CREATE, existence for DROP.

    :param timeout: seconds pt-osc may take before it is killed (default 600).
    :param extra_args: more pt-osc options, appended after the settings' ``ptosc_extra_args``.
    """

    template_fields: Sequence[str] = (*ShiftMigrationOperator.template_fields, "extra_args")
    ui_color = "#e0f2fe"

    def __init__(self, *, timeout: float = 600, extra_args: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout = timeout
        self.extra_args = extra_args
        self._process: ChildProcess | None = None

    def run_step(self, context: Any, migration: Migration) -> None:
        require_preparing(migration)
        parsed = checked_ddl(migration)
        if parsed.action == Action.CREATE:
            self.create_and_drop(migration)
        elif parsed.action == Action.DROP:
            self.check_drop_target(migration)
        elif migration.is_short_run:
            self.log.info("runtype short: the DDL will run directly at start, so there is no pt-osc dry run")
        elif ptosc.unsupported_table(migration):
            # Still preparable: a human can approve it as a short run, which runs the DDL directly.
            reason = ptosc.unsupported_table(migration)
            self.log.warning("no pt-osc dry run: %s", reason)
            self.tell_shift(migration.id, f"no pt-online-schema-change dry run: {reason}", level=None)
        else:
            self.check_trigger_safety(migration)
            self.ptosc_dry_run(migration)

    # --- CREATE -------------------------------------------------------------

    def create_and_drop(self, migration: Migration) -> None:
        """Run the CREATE for real and drop what it made: the only proof MySQL accepts it."""
        hook = self.cluster(migration)
        existing = schema_ops.object_type(hook, migration.database, migration.table)
        if existing is not None:
            raise MigrationStepError(
                f"cannot create {describe(migration)}: a {existing.lower()} of that name already exists"
            )
        kind = "VIEW" if migration.mode == Mode.VIEW else "TABLE"
        self.log.info("creating %s to validate the DDL: %s", describe(migration), migration.ddl_statement)
        bound = LockBound.of(self.settings)  # a CREATE ... REFERENCES locks the live parent table
        try:
            bounded_ddl.run(hook, [migration.ddl_statement], bound, f"the validation CREATE of {describe(migration)}",
                            self.log)
        except bounded_ddl.LockBoundExceeded:
            raise
        except Exception as exc:
            if bounded_ddl.classify(exc) == bounded_ddl.ErrorKind.CONNECTION:
                raise
            raise MigrationStepError(f"ddl_statement fails on the database: {exc}") from None
        try:
            made = schema_ops.object_type(hook, migration.database, migration.table)
            if made != TABLE_TYPES[migration.mode]:
                raise MigrationStepError(
                    f"ddl_statement did not create a {kind.lower()} named {describe(migration)} (found {made!r})"
                )
            if migration.final_insert_sql:
                self.log.info("%s", final_insert_check.check(hook, migration, migration.final_insert_sql, None,
                                                             LockBound.of(self.settings)))
        finally:
            bounded_ddl.run(hook, [f"DROP {kind} IF EXISTS {qualified(migration.database, migration.table)}"],
                            bound, f"the drop of the validation {kind.lower()} {describe(migration)}", self.log)
        if schema_ops.object_type(hook, migration.database, migration.table) is not None:
            raise MigrationStepError(f"could not drop the validation {kind.lower()} {describe(migration)}")
        self.log.info("DDL is valid: %s created and dropped again, nothing left behind", describe(migration))

    # --- DROP ---------------------------------------------------------------

    def check_drop_target(self, migration: Migration) -> None:
        found = schema_ops.object_type(self.cluster(migration), migration.database, migration.table)
        wanted = TABLE_TYPES[migration.mode]
        if found is None:
            raise MigrationStepError(f"cannot drop {describe(migration)}: it does not exist")
        if found != wanted:
            raise MigrationStepError(
                f"cannot drop {describe(migration)} as a {wanted.lower()}: it is a {found.lower()}"
            )
        self.log.info("%s exists as a %s; the drop can run", describe(migration), found.lower())

    # --- ALTER by pt-osc ----------------------------------------------------

    def check_trigger_safety(self, migration: Migration) -> None:
        """Refuse, before any trigger exists, an ALTER whose new table would refuse the application's
        writes that pt-osc's triggers copy into it (see ``trigger_safety``)."""
        ptosc.check_runnable(migration, self.settings)  # refusals that need no SQL come first
        hook, clause = self.cluster(migration), ptosc.alter_clause(migration)
        refused = foreign_keys.refusal(hook, migration.database, migration.table, clause,
                                       self.settings.allow_foreign_keys)
        if refused:
            raise MigrationStepError(refused)
        found = trigger_safety.problems(hook, migration, clause, self.log)
        if found:
            raise MigrationStepError("refusing this ALTER: " + "; ".join(found))
        self.log.info("pt-osc's triggers can apply the application's writes to the new table")
        unique_keys.check(hook, migration, clause, self.log, "at prepare")

    def ptosc_dry_run(self, migration: Migration) -> None:
        """The real pt-osc --dry-run; credentials in the 0600 defaults file, passed first."""
        hook = self.cluster(migration)
        with hook.defaults_file() as defaults:
            command = ptosc.build_command(migration, self.settings, defaults, ptosc.Execution.DRY_RUN,
                                          extra_args=list(self.extra_args or []))
            # After the options are validated (no query before that); pt-osc would only say "has
            # triggers": name the migration whose copy is in flight instead.
            leftovers.refuse_others(hook, migration.database, migration.table, migration.id)
            self.log.info("running: %s", shlex.join(command.argv))
            exit_code, stdout, stderr = self._run(command.argv)
        # The shift UI shows the dry run's output too (the task log has it line by line already).
        self.tell_shift(migration.id, "\n".join(["pt-online-schema-change --dry-run:", *stdout, *stderr,
                                                 f"exit code {exit_code}"]), level=None)
        if exit_code != 0:
            failure = ptosc.diagnose(exit_code, stdout + stderr)  # pt-osc's own refusals go to stdout
            if failure.transient:  # the server went away, not the migration's fault: a retry may pass
                raise PtOscError(failure.message, exit_code=exit_code)
            raise MigrationStepError(f"dry run failed: {failure.message}")
        if not ptosc.is_clean_stderr_end(stderr[-1] if stderr else None):
            raise MigrationStepError("dry run failed: " + ptosc.failure_message(exit_code, stdout + stderr))
        self.log.info("pt-osc dry run succeeded")

    def _run(self, argv: list[str]) -> tuple[int, list[str], list[str]]:
        """Run pt-osc as the copy does (``ChildProcess``: argv, own process group, dies with the task),
        streaming both outputs into the task log; stop it on timeout."""
        process = ChildProcess(argv).start()
        self._process = process
        output: dict[str, list[str]] = {"stdout": [], "stderr": []}
        deadline = time.monotonic() + self.timeout
        try:
            for line in process.lines():
                if line is not None:
                    output[line.stream].append(line.text)
                    label = "out" if line.stream == "stdout" else "err"
                    self.log.info("pt-osc %s: %s", label, ptosc.own_timestamp(line.text)[1])  # Airflow stamps it
                if time.monotonic() > deadline:
                    process.stop()
                    raise PtOscError(f"pt-online-schema-change --dry-run did not finish within {self.timeout:g}s")
            exit_code = process.wait()
        finally:
            self._process = None
        return exit_code, output["stdout"], output["stderr"]

    def on_kill(self) -> None:
        process = self._process
        if process is not None:
            process.stop()


class DetectInstantDdlOperator(PrepareStep):
    """Decide whether the ALTER is instant on this server (metadata only), on an empty copy, never the table.

    The verdict goes to the state file (``instant_ddl``), XCom ``instant_ddl`` and the
    shift log, so the approving DBA knows no rows will be copied. See ``instant_ddl``.
    """

    ui_color = "#e0f2fe"

    def run_step(self, context: Any, migration: Migration) -> bool:
        require_preparing(migration)
        checked_ddl(migration)
        return instant_ddl.detect(self, context, migration)


class CollectTableStatsOperator(PrepareStep):
    """Send the table's starting size (rows, data, index) to shift and to XCom ``table_stats``."""

    ui_color = "#e0f2fe"

    def run_step(self, context: Any, migration: Migration) -> dict[str, int] | None:
        require_preparing(migration)
        checked_ddl(migration)
        if migration.action == Action.CREATE:
            self.log.info("CREATE: %s does not exist yet, so there are no starting stats", describe(migration))
            return None
        if migration.mode == Mode.VIEW:
            self.log.info("%s is a view: views have no size, no stats collected", describe(migration))
            return None
        stats = schema_ops.table_stats(self.cluster(migration), migration.database, migration.table)
        self.log.info("%s: %s (information_schema)", describe(migration), stats.describe())
        self.api.update(migration.id, **stats.as_update("start"))
        value = {"table_rows": stats.table_rows, "table_size": stats.table_size, "index_size": stats.index_size,
                 "rows": stats.rows_text}
        context["ti"].xcom_push(key="table_stats", value=value)
        return None


class AdvanceOperator(PrepareStep):
    """next_step 0 -> 1 (awaiting approval), once: a re-run after it moved does nothing."""

    ui_color = "#bbf7d0"

    def run_step(self, context: Any, migration: Migration) -> None:
        require_preparing(migration)
        current = self.api.get_migration(migration.id)
        if current.status in (Status.FAILED, Status.CANCELED):
            raise MigrationStepError(
                f"migration {migration.id} is {current.status.name.lower()} in shift; not advancing it"
            )
        if current.status != Status.PREPARING:
            self.log.info("migration %s is already at %s (%d); not calling next_step again", migration.id,
                          current.status.name.lower(), current.status)
            return
        answer = self.report_success(migration)
        status = answer.get("status") if isinstance(answer, dict) else None
        if status is None or int(status) != Status.AWAITING_APPROVAL:
            raise MigrationStepError(
                f"shift did not move migration {migration.id} to awaiting approval (status now {status!r}); "
                "is it still staged?"
            )
        self.log.info("migration %s prepared: now awaiting approval (1)", migration.id)
