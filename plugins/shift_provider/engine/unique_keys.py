"""New UNIQUE or PRIMARY keys: the runner proves the data unique itself, so pt-osc need not refuse them.

pt-osc copies with ``INSERT IGNORE`` and its triggers write with ``REPLACE``: where the
original holds two rows with one value of the new key, the new table silently keeps one.
pt-osc's own guard (``--check-unique-key-change``) refuses every such ALTER outright, the
unique data included. So the runner checks the new key on the original table with one
bounded ``GROUP BY ... HAVING COUNT(*) > 1`` query, at prepare, before the copy and again
before the swap (writes during the copy may add duplicates), names the duplicates when it
finds some, and runs pt-osc with ``--no-check-unique-key-change``.
"""

from __future__ import annotations

from shift_provider.contract.models import Migration
from shift_provider.engine.final_insert import BOOKKEEPING_DB
from shift_provider.engine.trigger_safety import QUERY_TIMEOUT_ERRORS, altered_copy, bounded_select, renamed_columns
from shift_provider.exceptions import MigrationStepError, ShiftError
from shift_provider.mysql import bounded_ddl
from shift_provider.mysql.sql import qualified, quote_ident

CHECK_SECONDS = 300  # one GROUP BY per new key
SAMPLES = 3


class UniquenessUnknown(ShiftError):
    """The uniqueness query ran out of time: nothing proves the new key safe yet (retryable)."""


def unique_keys(hook, database: str, table: str) -> dict[str, tuple[str, ...]]:
    """{index name: its columns (lower-cased, in order)} of the table's UNIQUE and PRIMARY keys."""
    rows = hook.get_records(
        "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
        "AND TABLE_NAME = %s AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX", parameters=(database, table))
    keys: dict[str, list[str]] = {}
    for index, column in rows:
        keys.setdefault(index, []).append(column.lower())
    return {k: tuple(v) for k, v in keys.items()}


def new_keys(hook, migration: Migration, clause: str) -> dict[str, tuple[str, ...]]:
    """The unique keys the ALTER adds (a column list no unique key of the original has), in the original's
    column names; keys over columns the ALTER adds are left out (no data to check)."""
    with altered_copy(hook, migration, clause) as scratch:
        if scratch is None:
            return {}
        after = unique_keys(hook, BOOKKEEPING_DB, scratch)
    before = set(unique_keys(hook, migration.database, migration.table).values())
    original = {r[0].lower() for r in hook.get_records(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        parameters=(migration.database, migration.table))}
    renamed = renamed_columns(clause)
    found = {}
    for name, cols in after.items():
        cols = tuple(renamed.get(c, c) for c in cols)
        if cols not in before and all(c in original for c in cols):
            found[name] = cols
    return found


def duplicates(hook, database: str, table: str, cols: tuple[str, ...]) -> list[tuple]:
    """Up to SAMPLES values of ``cols`` held by more than one row (NULLs never collide in a UNIQUE key)."""
    names = ", ".join(quote_ident(c) for c in cols)
    not_null = " AND ".join(f"{quote_ident(c)} IS NOT NULL" for c in cols)
    try:
        return [tuple(r) for r in bounded_select(
            hook, f"{names}, COUNT(*) FROM {qualified(database, table)} WHERE {not_null} GROUP BY {names} "
                  f"HAVING COUNT(*) > 1 LIMIT {SAMPLES}", CHECK_SECONDS)]
    except Exception as exc:
        if bounded_ddl.error_code(exc) in QUERY_TIMEOUT_ERRORS:
            raise UniquenessUnknown(f"checking that `{database}`.`{table}` ({', '.join(cols)}) is unique took "
                                    f"more than {CHECK_SECONDS}s; retry when the server is less busy") from None
        raise


def check(hook, migration: Migration, clause: str, log, when: str) -> None:
    """Refuse the ALTER when a key it adds would drop rows; log what was proven."""
    for name, cols in new_keys(hook, migration, clause).items():
        found = duplicates(hook, migration.database, migration.table, cols)
        if found:
            shown = "; ".join(", ".join(repr(v) for v in row[:-1]) + f" ({row[-1]} rows)" for row in found)
            raise MigrationStepError(
                f"refusing this ALTER ({when}): the new unique key `{name}` ({', '.join(cols)}) is not unique in "
                f"`{migration.database}`.`{migration.table}`: duplicate values {shown}. pt-osc's copy would keep "
                "one row of each and silently drop the others")
        log.info("%s: the new unique key `%s` (%s) holds no duplicate in `%s`.`%s`", when, name, ", ".join(cols),
                 migration.database, migration.table)
