"""Status 5, rename in progress: swap the copy's new table in, retire the old one, finish.

Sub-steps, each idempotent and recorded in the state file (``steps_done``):

1. swap            verify the new table, then one atomic ``RENAME TABLE t TO <old>, <new> TO t``
2. foreign_keys    (child tables) the old table's foreign keys dropped, pt-osc's renamed ones on
                   ``t`` given back their names (``foreign_key_names``)
3. drop_triggers   pt-osc's triggers followed the old table through the swap
4. retire          the old table into pending drops (or dropped when trash is off)
5. stats           *_end table stats to shift
6. final_insert    exactly once (a marker row commits with it)
7. complete        -> 8

Everything after the swap that could fail for a reason a retry cannot fix is checked or
done before it (the old table's name free in pending drops, that database created); no
constraint name can collide there, as a retired table loses its foreign keys first.
What is left can only wait on the lock bound, and a retry finishes it.

An instant-capable ALTER (``instant_ddl``: the copy copied nothing) has no swap: the
ALTER runs with ``ALGORITHM=INSTANT`` on the live table (recorded as ``instant_alter``),
then stats, final insert and complete; refused at that moment, pt-osc copies inline and
the swap below follows.

The <old> name is chosen and saved BEFORE the swap, so a retry finds it; whether a
sub-step happened is decided from the database's actual state, the state file only
says which names to look for. Clearing the task after a failure anywhere finishes the
job without a second swap, a lost table or a second final insert.

Failures: a refusal to swap (the new table is missing, wrong, out of sync or short of
rows) and a broken final insert fail the migration in shift. Anything a retry can fix
(the swap's lock bound exhausted, a lost connection, the API down) leaves the
migration at 5 with the error in its shift log, because "failed" is terminal and only
the runner can finish a half-done rename: clear the task to finish it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from shift_provider import ptosc
from shift_provider.contract.codes import Status
from shift_provider.contract.models import Migration
from shift_provider.contract.state_file import MigrationState, load_state, save_state
from shift_provider.engine import abandon_copy, final_insert, instant_ddl, leftovers, rename_steps, unique_keys
from shift_provider.exceptions import MigrationStepError
from shift_provider.mysql import foreign_key_names, schema_ops, table_definition
from shift_provider.mysql.bounded_ddl import LockBound
from shift_provider.mysql.sql import timestamped_name
from shift_provider.operators.base import PERMANENT_ERRORS, ShiftMigrationOperator
from shift_provider.ptosc import alter_clause

SUBSTEPS = ("swap", "foreign_keys", "drop_triggers", "retire", "stats", "final_insert")


def step_key(name: str) -> str:
    """The name a rename sub-step has in the state file's ``steps_done``."""
    return f"rename.{name}"


class RenameOperator(ShiftMigrationOperator):
    """Status 5: the atomic swap and everything after it, safe to run again after any failure.

    :param exact_count_max_rows: below this many rows (estimated, both tables) the row
        counts are compared exactly before the swap; above it, by information_schema estimate.
    """

    ui_color = "#fde68a"

    def __init__(self, *, exact_count_max_rows: int = rename_steps.EXACT_COUNT_MAX_ROWS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exact_count_max_rows = exact_count_max_rows

    def after_substep(self, name: str, state: MigrationState) -> None:
        """Called after each sub-step acted, before it is recorded as done (a seam for fault tests)."""

    # --- the step -------------------------------------------------------------------------

    def nothing_to_do(self, context: Any, migration: Migration) -> str | None:
        if not migration.uses_ptosc:
            return "a short run, CREATE or DROP has no rename"
        if migration.status != Status.RENAME_IN_PROGRESS:
            return (f"the migration is at {migration.status.name.lower()} ({int(migration.status)}), "
                    "not rename in progress")
        return None

    def run_step(self, context: Any, migration: Migration) -> Any:
        current = self.api.get_migration(migration.id)
        if current.status == Status.COMPLETED:
            self.log.info("migration %s is already completed; nothing to do", migration.id)
            return {"already_completed": True}
        if current.status != Status.RENAME_IN_PROGRESS:
            raise MigrationStepError(f"migration {migration.id} is at status {current.status.name.lower()} "
                                     f"({int(current.status)}), not rename in progress; not renaming")
        if not migration.uses_ptosc:
            raise MigrationStepError("the rename step is for ALTERs copied by pt-osc; this migration is not one")
        self.expected = rename_steps.alter_expectations(alter_clause(migration))
        hook = self.cluster(migration)
        state = self.load_copy_state(migration, hook)
        if instant_ddl.at_rename(state):  # the copy copied nothing: the ALTER is applied in place
            applied = instant_ddl.InstantRename(self, context, migration, hook, state).run()
            if applied is not None:
                self.send_end_stats(hook, migration, state)
                self.run_final_insert(hook, migration, state)
                self.log.info("completing migration %s", migration.id)
                self.report_success(migration)
                return applied
            state = self.load_copy_state(migration, hook)  # refused now: pt-osc copied inline; swap as usual

        self.swap(hook, migration, state)
        self.restore_foreign_keys(hook, migration, state)
        self.drop_triggers(hook, migration, state)
        self.retire(hook, migration, state)
        self.send_end_stats(hook, migration, state)
        self.run_final_insert(hook, migration, state)
        self.log.info("completing migration %s", migration.id)
        self.report_success(migration)
        return {"old_table": state.old_table, "retired_to": state.retired_to}

    def load_copy_state(self, migration: Migration, hook) -> MigrationState:
        """The copy's state file; what it lacks comes from the names shift derives and information_schema."""
        state = load_state(self.api, migration.id)
        if state.table and state.table != migration.table:
            raise MigrationStepError(f"the state file is for table {state.table!r}, not {migration.table!r}")
        state.database = state.database or migration.database
        state.table = migration.table
        if not state.new_table:
            state.new_table = ptosc.shadow_table_name(migration.table, migration.id)
            self.log.info("no new table in the state file; using this migration's `%s`", state.new_table)
        if not state.triggers:
            mine, _ = leftovers.split(hook, migration.database, migration.table, migration.id, state.new_table)
            state.triggers = [x.name for x in mine if x.kind == "trigger"]
        self.log.info("state: new table `%s`, triggers %s, old table %r, done %s", state.new_table, state.triggers,
                      state.old_table or None, state.steps_done)
        return state

    def mark_done(self, name: str, state: MigrationState) -> None:
        self.after_substep(name, state)
        state.mark(step_key(name))
        save_state(self.api, state)

    # --- sub-steps --------------------------------------------------------------------------

    def swap(self, hook, migration: Migration, state: MigrationState) -> None:
        """Verify the new table, then swap it in: once, atomically, within the lock bound."""
        db, table = migration.database, migration.table
        if not state.old_table:
            # Chosen and saved before acting: a retry must look for (and reuse) this very name.
            state.old_table = timestamped_name(table)
            save_state(self.api, state)
        situation = rename_steps.swap_state(
            hook, db, table, state.new_table, state.old_table, old_location=self._retired_location(state),
            old_dropped=state.retired_to == "dropped", expected=self.expected)
        if situation == rename_steps.SwapState.DONE:
            self.log.info("swap: already done (`%s` is gone, `%s` has the new schema, the old table is `%s`)",
                          state.new_table, table, state.old_table)
        else:
            try:
                self.refuse_changed_original(hook, migration, state)
                if self.settings.checksum_at_rename:
                    self.checksum_again(hook, migration, state)
                # Writes during the copy may have added duplicates of a new unique key (REPLACE dropped them).
                unique_keys.check(hook, migration, alter_clause(migration), self.log, "before the swap")
                # A copy proven by its checksum is counted exactly (no estimate) whatever its size.
                exact_max_rows = sys.maxsize if state.checksum else self.exact_count_max_rows
                verified = rename_steps.verify_new_table(
                    hook, db, table, state.new_table, self.expected, exact_max_rows=exact_max_rows,
                    bound=LockBound.of(self.settings), log=self.log)
                self.prepare_after_swap(hook, migration, state)
            except MigrationStepError:
                # Refused before any swap: this copy will never be used (see report_failure).
                self._abandon = (hook, migration, state)
                raise
            self.log.info("swap: %s", verified)
            attempt = rename_steps.swap_tables(hook, db, table, state.new_table, state.old_table,
                                               LockBound.of(self.settings), self.log)
            self.log.info("swap: done on attempt %d: `%s` is the new table, the old one is `%s`", attempt, table,
                          state.old_table)
        self.mark_done("swap", state)

    def prepare_after_swap(self, hook, migration: Migration, state: MigrationState) -> None:
        """Before the swap: refuse what would fail after it, and save the foreign key names to give back."""
        target = rename_steps.retire_target(self.settings, migration.database, state.old_table)
        problems = rename_steps.retire_problems(hook, target)
        if problems:
            raise MigrationStepError("refusing to swap: " + "; ".join(problems))
        if target is not None:
            schema_ops.ensure_database(hook, target[0])  # a missing privilege shows now, not after the swap
        state.foreign_key_names = foreign_key_names.renames(hook, migration.database, migration.table,
                                                            state.new_table)
        if state.foreign_key_names:
            self.log.info("swap: pt-osc renamed the foreign keys %s; they get their names back after the swap",
                          state.foreign_key_names)
        save_state(self.api, state)

    def restore_foreign_keys(self, hook, migration: Migration, state: MigrationState) -> None:
        """The old table's foreign keys off (they name the live parent), then ``t``'s back to their names."""
        if state.done(step_key("foreign_keys")):
            return
        db, bound = migration.database, LockBound.of(self.settings)
        if schema_ops.table_exists(hook, db, state.old_table):
            dropped = foreign_key_names.drop_all(hook, db, state.old_table, bound, self.log)
            if dropped:
                self.log.info("foreign_keys: dropped %s from the old table `%s`", dropped, state.old_table)
        restored = foreign_key_names.restore(hook, db, migration.table, state.foreign_key_names, bound, self.log)
        if restored:
            self.log.info("foreign_keys: `%s` has its foreign keys %s back under their names", migration.table,
                          restored)
        self.mark_done("foreign_keys", state)

    def refuse_changed_original(self, hook, migration: Migration, state: MigrationState) -> None:
        """The live table must still be the one the copy started from, or the swap would lose the change.

        A column added (and filled) since the copy, a changed type, default or index is
        not in the shadow table: refuse, naming it, and leave the live table as it is.
        """
        db, table = migration.database, migration.table
        changes: list[str] = []
        if state.original_definition:
            now = table_definition.fingerprint(hook, db, table)
            changes = table_definition.differences(state.original_definition, now)
        else:
            self.log.warning("the state file has no definition of `%s` from the copy (an older runner's copy); "
                             "checking only that every column and index is in the new table or dropped by the "
                             "ALTER", table)
        changes += rename_steps.unexplained_by_alter(hook, db, table, state.new_table, self.expected)
        if changes:
            raise MigrationStepError(
                f"refusing to swap: `{db}`.`{table}` changed since the copy in ways the ALTER does not explain, "
                f"and the new table `{state.new_table}` (built from the table as it was) would lose them: "
                + "; ".join(changes) + f". `{table}` is left as it is, with its data; cancel this migration and "
                "file it again against the table as it is now")
    def checksum_again(self, hook, migration: Migration, state: MigrationState) -> None:
        """``checksum_at_rename``: the whole content checksum once more, right before the swap."""
        from shift_provider.engine import checksum

        result = checksum.compare(
            hook, migration.database, migration.table, state.new_table,
            renamed_columns=self.expected.renamed_columns,
            max_threads_running=ptosc.max_load_threads_running(migration),
            chunk_seconds=self.settings.checksum_chunk_seconds,
            progress=lambda percent, eta: None, note=lambda text: self.log.info("%s", text))
        state.checksum = {**result.as_dict(), "at": "rename"}
        save_state(self.api, state)
        self.xcom_push_checksum(result)
        self.log.info("checksum at rename: %d rows in %d chunk(s), %d chunk(s) copied again (%d rows), %.1fs",
                      result.rows, result.chunks, result.chunks_repaired, result.rows_repaired, result.seconds)

    def xcom_push_checksum(self, result) -> None:
        from airflow.sdk import get_current_context

        get_current_context()["ti"].xcom_push(key="checksum", value=result.as_dict())

    def drop_triggers(self, hook, migration: Migration, state: MigrationState) -> None:
        """pt-osc's triggers now hang on the old table and write to a table that is gone: drop them."""
        names = rename_steps.leftover_triggers(hook, migration.database, state.old_table, state.triggers)
        if names:
            schema_ops.drop_triggers(hook, migration.database, names, LockBound.of(self.settings), self.log)
            self.log.info("drop_triggers: dropped %s from `%s`", names, state.old_table)
        else:
            self.log.info("drop_triggers: no triggers left on `%s`", state.old_table)
        self.mark_done("drop_triggers", state)

    def retire(self, hook, migration: Migration, state: MigrationState) -> None:
        """The old table into pending drops (or dropped); where it goes is saved before moving it."""
        if not state.retired_to:
            target = rename_steps.retire_target(self.settings, migration.database, state.old_table)
            state.retired_to = "dropped" if target is None else f"{target[0]}.{target[1]}"
            save_state(self.api, state)
        target = None if state.retired_to == "dropped" else self._retired_location(state)
        what = rename_steps.retire_old_table(hook, migration.database, state.old_table, target,
                                             LockBound.of(self.settings), self.log)
        self.log.info("retire: old table `%s` %s", state.old_table, what)
        self.mark_done("retire", state)

    def send_end_stats(self, hook, migration: Migration, state: MigrationState) -> None:
        stats = rename_steps.end_stats(hook, migration.database, migration.table, LockBound.of(self.settings),
                                       self.log)
        self.api.update(migration.id, **stats.as_update("end"))
        self.log.info("stats: %s (information_schema, after ANALYZE)", stats.describe())
        self.mark_done("stats", state)

    def run_final_insert(self, hook, migration: Migration, state: MigrationState) -> None:
        self.log.info("final_insert: %s", final_insert.run_once(hook, migration.id, migration.final_insert_sql))
        self.mark_done("final_insert", state)

    # --- helpers ------------------------------------------------------------------------------

    _abandon: tuple | None = None

    def abandon_refused_copy(self) -> None:
        """Before failing (10, terminal) a migration whose swap was refused: nothing would ever remove
        pt-osc's triggers from the live table, and they burden (or break) every write to it. So they go,
        and the shadow table goes to pending drops, only when the refusal came before any swap."""
        if self._abandon is None:
            return
        hook, migration, state = self._abandon
        try:
            done = abandon_copy.abandon(hook, self.settings, migration.database, migration.table, state.new_table,
                                       self.log)
            state.triggers = []
            save_state(self.api, state)
            message = f"rename refused: the copy will not be used, so {done}"
        except Exception as exc:  # the failure is still reported; a human sees both
            message = f"rename refused, and removing the copy's triggers and shadow table failed too: {exc}"
        self.tell_shift(migration.id, message, logging.WARNING)

    @staticmethod
    def _retired_location(state: MigrationState) -> tuple[str, str] | None:
        """(database, name) from ``retired_to`` = ``db.<old>`` (the database name may hold dots)."""
        suffix = "." + state.old_table
        if state.old_table and state.retired_to.endswith(suffix) and len(state.retired_to) > len(suffix):
            return state.retired_to[: -len(suffix)], state.old_table
        return None

    def report_failure(self, migration: Migration, exc: BaseException, *, final: bool) -> None:
        """Permanent errors fail the migration; retryable ones leave it at 5, said in its shift log."""
        if isinstance(exc, PERMANENT_ERRORS):
            self.abandon_refused_copy()
            super().report_failure(migration, exc, final=final)
            return
        self.keep_status_after(migration, exc, "rename step")
