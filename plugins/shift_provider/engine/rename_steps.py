"""The rename step's database sub-steps: verify the new table, swap atomically, clean up.

pt-osc's own swap trusts its copy; ours runs later, after a human said "rename", so
it checks first that the shadow table still is what the ALTER asked for, is kept in
sync by pt-osc's triggers and holds the original's rows. Each function looks at the
database's actual state before acting, so the operator can call it again after a
failure at any point: no second swap, no lost table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from shift_provider import ptosc
from shift_provider.exceptions import MigrationStepError
from shift_provider.mysql import bounded_ddl, foreign_key_names, schema_ops, statement_log, table_definition
from shift_provider.mysql.bounded_ddl import LockBound, LockBoundExceeded
from shift_provider.mysql.sql import qualified, quote_ident, specifications
from shift_provider.settings import Settings

# Below this many rows (information_schema's estimate, for both tables) the row counts are
# compared exactly with COUNT(*) inside one consistent snapshot: about 0.2 s per million rows.
EXACT_COUNT_MAX_ROWS = 1_000_000
# Above it, InnoDB's sampled TABLE_ROWS estimates are compared. They can be off by tens of
# percent on a healthy table (20 sampled pages), so the bound only catches a shadow table that
# is empty or far from copied: |new - original| <= max(50% of original, 1000 rows).
ESTIMATE_TOLERANCE = 0.5
ESTIMATE_SLACK_ROWS = 1000
# ALTER specifications that rebuild the table without changing its definition, or change only what
# ``definition`` leaves out (the AUTO_INCREMENT counter), so "differs" cannot hold.
_REBUILD_WORDS = frozenset({"ENGINE", "FORCE", "ALGORITHM", "LOCK", "AUTO_INCREMENT"})
_INDEX_WORDS = frozenset({"INDEX", "KEY"})
_NOT_A_COLUMN = frozenset({"INDEX", "KEY", "UNIQUE", "FULLTEXT", "SPATIAL", "PRIMARY", "CONSTRAINT", "FOREIGN",
                           "PARTITION", "CHECK", "PERIOD", "SYSTEM", "VECTOR"})


# The swap's bound running out is the shared one's (kept under this name for the rename's callers).
RenameLockTimeout = LockBoundExceeded


class SwapState(str, Enum):
    NOT_DONE = "not done"
    DONE = "done"


@dataclass(frozen=True)
class Expectations:
    """What the ALTER names, so the new table can be checked for it (names lower-cased)."""

    added_columns: frozenset[str] = frozenset()
    dropped_columns: frozenset[str] = frozenset()
    added_indexes: frozenset[str] = frozenset()
    dropped_indexes: frozenset[str] = frozenset()
    # A rebuild (ENGINE=InnoDB, FORCE) or IF [NOT] EXISTS may leave the definition as it was.
    may_keep_definition: bool = False
    # CHANGE old new / RENAME COLUMN old TO new: the same data under a new name (old, new).
    renamed_columns: tuple[tuple[str, str], ...] = ()


def alter_expectations(alter_clause: str) -> Expectations:
    """Columns and indexes the ALTER adds or drops, read from its text; unknown forms add nothing."""
    add_c: set[str] = set()
    drop_c: set[str] = set()
    add_i: set[str] = set()
    drop_i: set[str] = set()
    renamed: list[tuple[str, str]] = []
    rebuild_only = True
    conditional = False
    for spec in specifications(alter_clause):
        words = [t.upper() if k == "word" else None for k, t in spec]
        names = [t.lower() if k in ("word", "qident") else None for k, t in spec]
        if words[0] not in _REBUILD_WORDS:
            rebuild_only = False
        if any(words[i:i + 2] == ["IF", "EXISTS"] or words[i:i + 3] == ["IF", "NOT", "EXISTS"]
               for i in range(len(words))):
            conditional = True

        def skip(pos: int, *optional: str) -> int:
            """Skip an optional run of keywords (e.g. IF NOT EXISTS) at pos."""
            if words[pos:pos + len(optional)] == list(optional):
                return pos + len(optional)
            return pos

        def name_at(pos: int) -> str | None:
            return names[pos] if pos < len(spec) and spec[pos][0] in ("word", "qident") else None

        head = words[0]
        if head == "ADD":
            pos = 1
            second = words[pos] if pos < len(words) else None
            if second == "PRIMARY":
                add_i.add("primary")
            elif second in _INDEX_WORDS or second in ("UNIQUE", "FULLTEXT", "SPATIAL"):
                pos += 1
                if second != "KEY" and second != "INDEX" and pos < len(words) and words[pos] in _INDEX_WORDS:
                    pos += 1
                pos = skip(pos, "IF", "NOT", "EXISTS")
                name = name_at(pos)
                if name and (pos + 1 < len(spec) and spec[pos + 1] == ("punct", "(")
                             or words[pos + 1:pos + 2] == ["USING"]):
                    add_i.add(name)
            elif second not in _NOT_A_COLUMN:
                pos = skip(pos, "COLUMN")
                pos = skip(pos, "IF", "NOT", "EXISTS")
                name = name_at(pos)
                if name:
                    add_c.add(name)
        elif head == "DROP":
            pos = 1
            second = words[pos] if pos < len(words) else None
            if second == "PRIMARY":
                drop_i.add("primary")
            elif second in _INDEX_WORDS:
                name = name_at(skip(pos + 1, "IF", "EXISTS"))
                if name:
                    drop_i.add(name)
            elif second not in _NOT_A_COLUMN:
                name = name_at(skip(skip(pos, "COLUMN"), "IF", "EXISTS"))
                if name:
                    drop_c.add(name)
        elif head == "CHANGE":
            pos = skip(skip(1, "COLUMN"), "IF", "EXISTS")
            old, new = name_at(pos), name_at(pos + 1)
            if old and new and old != new:
                drop_c.add(old)
                add_c.add(new)
                renamed.append((old, new))
        elif head == "RENAME" and len(words) > 3:
            if words[1] == "COLUMN" and words[3] == "TO" and name_at(2) and name_at(4):
                drop_c.add(name_at(2))
                add_c.add(name_at(4))
                renamed.append((name_at(2), name_at(4)))
            elif words[1] in _INDEX_WORDS and words[3] == "TO" and name_at(2) and name_at(4):
                drop_i.add(name_at(2))
                add_i.add(name_at(4))
    # A column dropped and added again (DROP c, ADD c ...) is only checked as present.
    return Expectations(frozenset(add_c), frozenset(drop_c - add_c), frozenset(add_i), frozenset(drop_i - add_i),
                        rebuild_only or conditional, tuple(renamed))


# --- what a table looks like -----------------------------------------------------------------

def columns(hook, database: str, table: str) -> set[str]:
    rows = hook.get_records("SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", parameters=(database, table))
    return {r[0].lower() for r in rows}


def indexes(hook, database: str, table: str) -> set[str]:
    rows = hook.get_records("SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS "
                            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", parameters=(database, table))
    return {r[0].lower() for r in rows}


def schema_problems(hook, database: str, table: str, expected: Expectations,
                    original: tuple[str, str] | None) -> list[str]:
    """Why ``table`` does not look like the ALTER's result (empty when it does).

    ``original`` (database, table) is the table it must differ from, when it still exists.
    """
    have_c, have_i = columns(hook, database, table), indexes(hook, database, table)
    problems = [f"column `{c}` (added by the ALTER) is missing" for c in sorted(expected.added_columns - have_c)]
    problems += [f"column `{c}` (dropped by the ALTER) is still there"
                 for c in sorted(expected.dropped_columns & have_c)]
    problems += [f"index `{i}` (added by the ALTER) is missing" for i in sorted(expected.added_indexes - have_i)]
    problems += [f"index `{i}` (dropped by the ALTER) is still there"
                 for i in sorted(expected.dropped_indexes & have_i)]
    if original is not None and not expected.may_keep_definition \
            and table_definition.definition(hook, database, table) == table_definition.definition(hook, *original):
        problems.append(f"its definition is the same as `{original[0]}`.`{original[1]}`'s: the ALTER is not applied")
    return problems


# --- verify, before the swap -------------------------------------------------------------------

def unexplained_by_alter(hook, database: str, table: str, new_table: str, expected: Expectations) -> list[str]:
    """Columns and indexes of ``table`` missing from ``new_table`` that the ALTER does not drop.

    The swap would lose them (e.g. a column added to the live table after the copy).
    """
    if not schema_ops.table_exists(hook, database, new_table):
        return []  # verify_new_table says so, in its own words
    lost_c = columns(hook, database, table) - columns(hook, database, new_table) - expected.dropped_columns
    lost_i = indexes(hook, database, table) - indexes(hook, database, new_table) - expected.dropped_indexes
    return ([f"column `{c}` of `{table}` is not in the new table and the ALTER does not drop it"
             for c in sorted(lost_c)]
            + [f"index `{i}` of `{table}` is not in the new table and the ALTER does not drop it"
               for i in sorted(lost_i)])


def sync_triggers(hook, database: str, table: str, new_table: str) -> dict[str, str]:
    """{INSERT|UPDATE|DELETE: trigger name} of the triggers on ``table`` that write to ``new_table``."""
    rows = hook.get_records(
        "SELECT TRIGGER_NAME, EVENT_MANIPULATION, ACTION_STATEMENT FROM information_schema.TRIGGERS "
        "WHERE TRIGGER_SCHEMA = %s AND EVENT_OBJECT_TABLE = %s", parameters=(database, table))
    target = quote_ident(new_table)
    return {event: name for name, event, body in rows if target in (body or "")}


def row_counts(hook, database: str, table: str, new_table: str, exact_max_rows: int, bound: LockBound,
               log) -> tuple[int, int, bool]:
    """(original rows, new rows, exact?): COUNT(*) in one snapshot when both are small, estimates otherwise.

    In one consistent snapshot the counts of a table and of a shadow table kept by
    pt-osc's triggers are equal: the triggers write in the writer's own transaction.
    """
    estimates = [schema_ops.table_stats(hook, database, name).table_rows for name in (table, new_table)]
    if max(estimates) > exact_max_rows:
        analyze(hook, database, [table, new_table], bound, log)
        estimates = [schema_ops.table_stats(hook, database, name).table_rows for name in (table, new_table)]
        return estimates[0], estimates[1], False
    conn = hook.get_conn()
    try:
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            counts = []
            for name in (table, new_table):
                cur.execute(f"SELECT COUNT(*) FROM {qualified(database, name)}")
                counts.append(int(cur.fetchone()[0]))
            cur.execute("ROLLBACK")
    finally:
        conn.close()
    return counts[0], counts[1], True


def verify_new_table(hook, database: str, table: str, new_table: str, expected: Expectations, *,
                     exact_max_rows: int, bound: LockBound, log) -> str:
    """Refuse the swap unless the new table exists, has the new schema, is kept in sync and holds the rows.

    Returns a one-line summary for the log.
    """
    where = f"`{database}`.`{new_table}`"
    if not schema_ops.table_exists(hook, database, table):
        raise MigrationStepError(f"table `{database}`.`{table}` does not exist: nothing to rename")
    if not schema_ops.table_exists(hook, database, new_table):
        raise MigrationStepError(f"the copy's new table {where} does not exist: nothing to swap in "
                                 "(was the copy run, or canceled?)")
    problems = schema_problems(hook, database, new_table, expected, (database, table))
    if problems:
        raise MigrationStepError(f"refusing to swap: the new table {where} does not have the new schema: "
                                 + "; ".join(problems))
    triggers = sync_triggers(hook, database, table, new_table)
    missing = sorted({"INSERT", "UPDATE", "DELETE"} - set(triggers))
    if missing:
        raise MigrationStepError(
            f"refusing to swap: `{database}`.`{table}` has no trigger copying {', '.join(missing)}s into {where}, "
            "so the new table is not kept in sync (writes since the copy would be lost)")
    original, new, exact = row_counts(hook, database, table, new_table, exact_max_rows, bound, log)
    if exact and original != new:
        raise MigrationStepError(
            f"refusing to swap: {where} holds {new} rows but `{database}`.`{table}` holds {original} "
            "(exact counts in one snapshot; pt-osc's INSERT IGNORE copy can silently drop rows, e.g. on a new "
            "UNIQUE key)")
    bound = max(ESTIMATE_SLACK_ROWS, int(ESTIMATE_TOLERANCE * original))
    if not exact and abs(original - new) > bound:
        raise MigrationStepError(
            f"refusing to swap: {where} holds about {new} rows but `{database}`.`{table}` about {original} "
            f"(information_schema estimates; tolerance {bound} rows)")
    if exact:
        rows = f"exactly {new:,} rows in both (COUNT(*) in one snapshot)"
    else:
        rows = (f"about {new:,} rows vs about {original:,} (information_schema estimates, "
                f"within the tolerance of {bound:,})")
    return f"new table {where} verified: new schema, triggers {sorted(triggers.values())} keep it in sync, {rows}"


# --- the swap ----------------------------------------------------------------------------------

def swap_state(hook, database: str, table: str, new_table: str, old_table: str, *,
               old_location: tuple[str, str] | None, old_dropped: bool, expected: Expectations) -> SwapState:
    """Whether ``RENAME TABLE t TO old, new TO t`` already happened, from what the database holds.

    ``old_location`` is where the old table is retired to, (database, name), or None;
    ``old_dropped`` says the state file recorded dropping it. Done iff the new table is
    gone, the old one exists (here or retired) or was dropped, and ``t`` has the new
    schema; not done iff ``t`` and the new table exist and the old one does not. Anything
    else is refused: a human must look.
    """
    have_table = schema_ops.table_exists(hook, database, table)
    have_new = schema_ops.table_exists(hook, database, new_table)
    have_old_here = schema_ops.table_exists(hook, database, old_table)
    have_old_retired = old_location is not None and old_location != (database, old_table) \
        and schema_ops.table_exists(hook, *old_location)
    have_old = have_old_here or have_old_retired
    seen = (f"`{database}`.`{table}` {'exists' if have_table else 'missing'}, new table `{new_table}` "
            f"{'exists' if have_new else 'missing'}, old table `{old_table}` "
            f"{'exists' if have_old_here else ('retired' if have_old_retired else 'missing')}")
    if have_table and have_new and not have_old:
        return SwapState.NOT_DONE
    if have_table and not have_new and (have_old or old_dropped):
        original = (database, old_table) if have_old_here else (old_location if have_old_retired else None)
        problems = schema_problems(hook, database, table, expected, original)
        if problems:
            raise MigrationStepError(f"cannot tell whether the swap happened ({seen}) and `{table}` does not have "
                                     "the new schema: " + "; ".join(problems) + "; a human must look")
        return SwapState.DONE
    raise MigrationStepError(f"the tables are not in a state the rename can continue from ({seen}); "
                             "a human must look")


def swap_tables(hook, database: str, table: str, new_table: str, old_table: str, bound: LockBound, log) -> int:
    """One atomic ``RENAME TABLE t TO old, new TO t`` under the lock bound; returns the attempt that succeeded.

    The RENAME needs an exclusive metadata lock on both tables; while it waits, every new
    query on ``t`` queues behind it (see ``bounded_ddl``). RENAME is all or nothing, so a
    bound that runs out leaves the tables unchanged.
    """
    statement = (f"RENAME TABLE {qualified(database, table)} TO {qualified(database, old_table)}, "
                 f"{qualified(database, new_table)} TO {qualified(database, table)}")
    with bounded_ddl.session(hook, bound, log) as cur:
        return bounded_ddl.execute(cur, statement, bound, f"RENAME TABLE `{database}`.`{table}`", log,
                                   unchanged="the tables are unchanged")


# --- after the swap ----------------------------------------------------------------------------

def leftover_triggers(hook, database: str, old_table: str, known: list[str]) -> list[str]:
    """pt-osc's triggers (or the state file's) that followed the old table through the swap."""
    return [name for name in schema_ops.triggers_on(hook, database, old_table)
            if name.startswith(ptosc.TRIGGER_PREFIX) or name in known]


def retire_target(settings: Settings, database: str, old_table: str) -> tuple[str, str] | None:
    """Where the old table goes: (database, name) in pending drops, or None when it is dropped."""
    if not settings.enable_trash:
        return None
    return schema_ops.trash_database(settings, database), old_table


def retire_old_table(hook, database: str, old_table: str, target: tuple[str, str] | None,
                     bound: LockBound, log) -> str:
    """Move the old table into pending drops (kept as is when that is its own database) or drop it.

    Idempotent: an old table already moved or dropped is left alone. Returns what happened.
    Its foreign keys go first, wherever it goes (see ``foreign_key_names``).
    """
    here = schema_ops.table_exists(hook, database, old_table)
    if here:
        foreign_key_names.drop_all(hook, database, old_table, bound, log)
    if target is None:
        if not here:
            return "already dropped"
        bounded_ddl.run(hook, [f"DROP TABLE IF EXISTS {qualified(database, old_table)}"], bound,
                        f"DROP TABLE `{database}`.`{old_table}`", log)
        return "dropped"
    if target == (database, old_table):
        if not here:
            raise MigrationStepError(f"the old table `{database}`.`{old_table}` has disappeared")
        return f"kept in `{database}` as `{old_table}` (pending drops is the migration's own database)"
    if not here:
        if schema_ops.table_exists(hook, *target):
            return f"already in `{target[0]}` as `{target[1]}`"
        raise MigrationStepError(f"the old table `{database}`.`{old_table}` is neither in its database nor in "
                                 f"pending drops `{target[0]}`")
    if schema_ops.table_exists(hook, *target):
        raise MigrationStepError(f"pending drops already holds a table `{target[0]}`.`{target[1]}`; "
                                 f"not moving `{database}`.`{old_table}` over it")
    schema_ops.ensure_database(hook, target[0])
    bounded_ddl.run(hook, [f"RENAME TABLE {qualified(database, old_table)} TO {qualified(*target)}"], bound,
                    f"RENAME TABLE `{database}`.`{old_table}` to pending drops", log)
    return f"moved to `{target[0]}`.`{target[1]}`"


def retire_problems(hook, target: tuple[str, str] | None) -> list[str]:
    """What would make the old table's retirement fail after the swap, checked before it.

    A name already taken in pending drops; constraint names cannot collide there, the
    old table's foreign keys are dropped before it moves.
    """
    if target is not None and schema_ops.table_exists(hook, *target):
        return [f"pending drops already holds a table `{target[0]}`.`{target[1]}`, the old table's name there"]
    return []


def analyze(hook, database: str, tables: list[str], bound: LockBound, log) -> None:
    """Refresh InnoDB's sampled stats (TABLE_ROWS), best effort.

    After a RENAME, InnoDB reads a table's persistent stats as they were last saved (for
    pt-osc's shadow table: 0 rows, at its creation) until its background recalculation runs.
    ``ANALYZE`` samples a few pages and, on MariaDB 10.11, does not wait for running queries;
    it stays out of the binlog, and engine-independent stats (a full scan) are turned off
    for the session. Failing here only leaves the stats stale.
    """
    names = ", ".join(qualified(database, t) for t in tables)
    try:
        with bounded_ddl.session(hook, LockBound(bound.timeout, 0), log) as cur:  # one attempt: stats can wait
            try:
                statement_log.execute(cur, "SET SESSION use_stat_tables = 'NEVER'", log=log)
            except Exception:  # not MariaDB: there are no engine-independent stats to avoid
                pass
            statement_log.execute(cur, f"ANALYZE NO_WRITE_TO_BINLOG TABLE {names}", log=log)
            problems = [row for row in cur.fetchall() if str(row[2]).lower() not in ("status", "note")]
        if problems:
            log.warning("ANALYZE TABLE %s said %s; the stats may be stale", names, problems)
    except Exception as exc:  # stats are informative: never fail the rename for them
        log.warning("ANALYZE TABLE in `%s` failed (%s); the stats may be stale", database, exc)


def end_stats(hook, database: str, table: str, bound: LockBound, log) -> schema_ops.TableStats:
    """The swapped-in table's stats, refreshed first (see ``analyze``)."""
    analyze(hook, database, [table], bound, log)
    return schema_ops.table_stats(hook, database, table)
