"""Status 3 for short runs, CREATE and DROP: run the change directly, the final insert once, complete.

Safe to clear and re-run at any point. Each sub-step is recorded in the state file
*and* checked against the database before it acts, so a worker that died between
acting and recording neither repeats the DDL nor loses the table:

* CREATE: "ddl started" + the object exists -> it ran.
* short ALTER: "ddl started" + the table's definition differs from the one recorded
  before it -> it ran.
* DROP: the timestamped pending-drops name is recorded before the move, so a table
  missing from its database is looked for where it went.
The final insert carries its own exactly-once marker (final_insert.run_once).

The DDL on an existing table (ALTER, DROP, their triggers) runs under the lock bound
(``bounded_ddl``), so a reader's long transaction never makes the application's writes
queue behind it for longer than the bound. A bound that runs out changes nothing and
leaves the migration at copy in progress (3), said in its shift log: clearing the task
in Airflow (or its own retry) runs it again. A CREATE locks no existing table; it goes
through the same call, which costs nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from shift_provider import run_state
from shift_provider.contract.codes import TABLE_TYPES, Action, Mode, Status
from shift_provider.contract.models import Migration
from shift_provider.contract.state_file import MigrationState, load_state, save_state
from shift_provider.contract.state_machine import copy_kind
from shift_provider.engine import leftovers
from shift_provider.engine.final_insert import run_once
from shift_provider.exceptions import MigrationStepError
from shift_provider.mysql import bounded_ddl, schema_ops, table_definition
from shift_provider.mysql.bounded_ddl import LockBound
from shift_provider.mysql.sql import qualified, timestamped_name
from shift_provider.operators.base import PERMANENT_ERRORS, ShiftMigrationOperator
from shift_provider.operators.prepare import checked_ddl, describe

DDL_STARTED = "run_ddl:ddl_started"
DDL_DONE = "run_ddl:ddl"
TRIGGERS_DROPPED = "run_ddl:triggers_dropped"
FINAL_INSERT_DONE = "run_ddl:final_insert"
# The table's definition_hash before the ALTER. (Renamed from "run_ddl:schema_before=", whose hash read
# the whole SHOW CREATE TABLE: a state saved by that version is not compared, so its ALTER runs again.)
SCHEMA_BEFORE = "run_ddl:definition_before="


def run_user_ddl(hook, ddl: str, bound: LockBound, log) -> None:
    """Run the migration's own DDL under the lock bound; a refusal by the server is permanent.

    A lost connection or a lock bound that ran out is not: the DDL did not happen, a retry may.
    """
    try:
        bounded_ddl.run(hook, [ddl], bound, "the migration's DDL", log)
    except bounded_ddl.LockBoundExceeded:
        raise
    except Exception as exc:
        if bounded_ddl.classify(exc) != bounded_ddl.ErrorKind.STATEMENT:
            raise
        raise MigrationStepError(f"ddl_statement failed on the database: {exc}") from None


class RunDdlOperator(ShiftMigrationOperator):
    """Short-run ALTER, CREATE or DROP at copy in progress (3): the DDL, the final insert, complete (8)."""

    ui_color = "#fde68a"

    def nothing_to_do(self, context: Any, migration: Migration) -> str | None:
        if migration.uses_ptosc:
            return "a long-run ALTER: pt-osc copies it in the copy task"
        if migration.status != Status.COPY_IN_PROGRESS:
            return f"the migration is at {migration.status.name.lower()} ({int(migration.status)}), not copy in progress"
        return None

    def run_step(self, context: Any, migration: Migration) -> None:
        if migration.status != Status.COPY_IN_PROGRESS:
            raise MigrationStepError(f"run_ddl runs at copy in progress (3); migration {migration.id} is at "
                                     f"{migration.status.name.lower()} ({int(migration.status)})")
        parsed = checked_ddl(migration)
        if copy_kind(migration) != "direct":
            raise MigrationStepError(f"migration {migration.id} is an ALTER of runtype "
                                     f"{migration.runtype.name.lower()}: it runs by pt-osc, not directly")
        current = self.api.get_migration(migration.id)
        if current.status == Status.COMPLETED:
            self.log.info("migration %s is already completed in shift; nothing to do", migration.id)
            return
        if current.status != Status.COPY_IN_PROGRESS:
            raise MigrationStepError(f"migration {migration.id} is {current.status.name.lower()} in shift; "
                                     "not running its DDL")
        hook = self.cluster(migration)
        state = load_state(self.api, migration.id)
        state.database, state.table = migration.database, migration.table
        if parsed.action == Action.CREATE:
            self.create(hook, migration, state)
        elif parsed.action == Action.DROP:
            self.drop(hook, migration, state)
        else:
            self.alter(hook, migration, state)
        self.final_insert(hook, migration, state)
        self.complete(migration)
        run_state.mark_ended(context, f"migration {migration.id} completed by run_ddl")

    def _record(self, state: MigrationState, *steps: str) -> None:
        for step in steps:
            state.mark(step)
        save_state(self.api, state)

    def report_failure(self, migration: Migration, exc: BaseException, *, final: bool) -> None:
        """A retryable failure (the lock bound ran out behind a long transaction, a lost connection) changed
        nothing the state file does not know: the migration stays at 3, said in its shift log, so clearing
        the task finishes it; error (13) would refuse that re-run."""
        if isinstance(exc, PERMANENT_ERRORS):
            super().report_failure(migration, exc, final=final)
            return
        self.keep_status_after(migration, exc, "short run")

    # --- CREATE -------------------------------------------------------------

    def create(self, hook, migration: Migration, state: MigrationState) -> None:
        wanted = TABLE_TYPES[migration.mode]
        found = schema_ops.object_type(hook, migration.database, migration.table)
        if state.done(DDL_DONE):
            if found != wanted:
                raise MigrationStepError(f"the state file says {describe(migration)} was created, but it is "
                                         f"{'missing' if found is None else 'a ' + found.lower()} now")
            self.log.info("CREATE already done (state file, and %s exists); skipping it", describe(migration))
            return
        if found is not None:
            if state.done(DDL_STARTED) and found == wanted:
                # Prepare proved it did not exist; we started the CREATE and died before recording it.
                self.log.info("%s exists and the CREATE was started by this migration: it ran", describe(migration))
                self._record(state, DDL_DONE)
                return
            raise MigrationStepError(f"cannot create {describe(migration)}: a {found.lower()} of that name "
                                     "already exists")
        self._record(state, DDL_STARTED)
        self.log.info("creating %s: %s", describe(migration), migration.ddl_statement)
        run_user_ddl(hook, migration.ddl_statement, LockBound.of(self.settings), self.log)
        found = schema_ops.object_type(hook, migration.database, migration.table)
        if found != wanted:
            raise MigrationStepError(f"ddl_statement ran but {describe(migration)} is not a {wanted.lower()} "
                                     f"(found {found!r})")
        self._record(state, DDL_DONE)
        self.log.info("created %s", describe(migration))

    # --- short ALTER --------------------------------------------------------

    def alter(self, hook, migration: Migration, state: MigrationState) -> None:
        if state.done(DDL_DONE):
            self.log.info("ALTER already done (state file); not running it again")
            return
        if not schema_ops.table_exists(hook, migration.database, migration.table):
            raise MigrationStepError(f"cannot alter {describe(migration)}: it does not exist")
        # Another migration's copy in flight would swap this change away (its rename refuses): one at a time.
        leftovers.refuse_others(hook, migration.database, migration.table, migration.id)
        before = table_definition.definition_hash(hook, migration.database, migration.table)
        recorded = next((s[len(SCHEMA_BEFORE):] for s in state.steps_done if s.startswith(SCHEMA_BEFORE)), None)
        if state.done(DDL_STARTED) and recorded is not None:
            if recorded != before:
                self.log.info("the ALTER was started before and the table's definition has changed since: it ran")
                self._record(state, DDL_DONE)
                return
            self.log.info("the ALTER was started before but the table is unchanged: running it now")
        else:
            self._record(state, SCHEMA_BEFORE + before, DDL_STARTED)
        self.log.info("altering %s directly (short run): %s", describe(migration), migration.ddl_statement)
        run_user_ddl(hook, migration.ddl_statement, LockBound.of(self.settings), self.log)
        self._record(state, DDL_DONE)
        self.log.info("altered %s", describe(migration))

    # --- DROP ---------------------------------------------------------------

    def drop(self, hook, migration: Migration, state: MigrationState) -> None:
        if state.done(DDL_DONE):
            self.log.info("DROP already done (state file: %s); skipping it", state.retired_to or "dropped")
            return
        wanted = TABLE_TYPES[migration.mode]
        found = schema_ops.object_type(hook, migration.database, migration.table)
        if found is None:
            if self._drop_already_happened(hook, migration, state):
                self._record(state, DDL_DONE)
                return
            raise MigrationStepError(f"cannot drop {describe(migration)}: it does not exist")
        if found != wanted:
            raise MigrationStepError(f"cannot drop {describe(migration)} as a {wanted.lower()}: "
                                     f"it is a {found.lower()}")
        if migration.mode == Mode.TABLE:  # never another migration's copy triggers: refuse while it is in flight
            leftovers.refuse_others(hook, migration.database, migration.table, migration.id)
        triggers = schema_ops.triggers_on(hook, migration.database, migration.table)
        if triggers:
            self.log.info("dropping triggers on %s first: %s", describe(migration), ", ".join(triggers))
            schema_ops.drop_triggers(hook, migration.database, triggers, LockBound.of(self.settings), self.log)
        self._record(state, TRIGGERS_DROPPED)
        if migration.mode == Mode.VIEW:
            state.retired_to = "dropped"
            self._record(state, DDL_STARTED)
            bounded_ddl.run(hook, [f"DROP VIEW IF EXISTS {qualified(migration.database, migration.table)}"],
                            LockBound.of(self.settings), f"DROP VIEW {describe(migration)}", self.log)
            self.log.info("dropped view %s", describe(migration))
        else:
            # Record where the table goes before it moves, so a re-run can find it there.
            now = datetime.now(timezone.utc)
            if self.settings.enable_trash:
                state.old_table = timestamped_name(migration.table, now)
                state.retired_to = f"{schema_ops.trash_database(self.settings, migration.database)}.{state.old_table}"
            else:
                state.old_table, state.retired_to = "", "dropped"
            self._record(state, DDL_STARTED)
            where = schema_ops.retire_table(hook, self.settings, migration.database, migration.table, now=now,
                                            log=self.log)
            self.log.info("table %s: %s", describe(migration), "dropped (trash disabled)" if where == "dropped"
                          else f"moved to pending drops as {where}")
        self._record(state, DDL_DONE)

    def _drop_already_happened(self, hook, migration: Migration, state: MigrationState) -> bool:
        """The object is gone: true when this migration's own earlier run removed it."""
        if not state.done(DDL_STARTED):
            return False
        if state.retired_to == "dropped":
            self.log.info("%s is gone and this migration had started dropping it: done", describe(migration))
            return True
        trash_db = schema_ops.trash_database(self.settings, migration.database)
        if state.old_table and schema_ops.table_exists(hook, trash_db, state.old_table):
            self.log.info("%s is already in pending drops as `%s`.`%s`", describe(migration), trash_db,
                          state.old_table)
            return True
        raise MigrationStepError(f"{describe(migration)} is gone but not where this migration moved it "
                                 f"({state.retired_to or 'unknown'}); a human must look")

    # --- after the change ---------------------------------------------------

    def final_insert(self, hook, migration: Migration, state: MigrationState) -> None:
        if state.done(FINAL_INSERT_DONE):
            self.log.info("final insert already done (state file)")
            return
        self.log.info("%s", run_once(hook, migration.id, migration.final_insert_sql))
        self._record(state, FINAL_INSERT_DONE)

    def complete(self, migration: Migration) -> None:
        answer = self.report_success(migration)
        status = answer.get("status") if isinstance(answer, dict) else None
        if status is None or int(status) != Status.COMPLETED:
            raise MigrationStepError(f"shift did not complete migration {migration.id} (status now {status!r})")
        self.log.info("migration %s completed", migration.id)
