"""Small, quoted, idempotent operations on a cluster's schema that several steps share.

Each function takes a ShiftClusterHook (any DbApiHook works) and builds its SQL
from quoted identifiers only; the user's DDL and final insert never pass here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shift_provider.exceptions import MigrationStepError
from shift_provider.mysql import bounded_ddl, foreign_key_names
from shift_provider.mysql.bounded_ddl import LockBound
from shift_provider.mysql.sql import qualified, quote_ident, timestamped_name
from shift_provider.settings import Settings


@dataclass(frozen=True)
class TableStats:
    """information_schema's view of a table, as shift stores it (*_start / *_end)."""

    table_rows: int
    table_size: int  # DATA_LENGTH
    index_size: int  # INDEX_LENGTH

    @property
    def rows_text(self) -> str:
        """TABLE_ROWS is InnoDB's sampled estimate (off by tens of percent): never shown as a count."""
        return f"about {self.table_rows:,} (estimate)"

    def describe(self) -> str:
        return f"{self.rows_text} rows, data {self.table_size:,} bytes, indexes {self.index_size:,} bytes"

    def as_update(self, suffix: str) -> dict[str, str]:
        return {f"table_rows_{suffix}": str(self.table_rows), f"table_size_{suffix}": str(self.table_size),
                f"index_size_{suffix}": str(self.index_size)}


def object_type(hook, database: str, name: str) -> str | None:
    """'BASE TABLE', 'VIEW', or None when nothing of that name exists."""
    row = hook.get_first(
        "SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        parameters=(database, name),
    )
    return row[0] if row else None


def table_exists(hook, database: str, table: str) -> bool:
    return object_type(hook, database, table) == "BASE TABLE"


def database_exists(hook, database: str) -> bool:
    return hook.get_first("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                          parameters=(database,)) is not None


def table_stats(hook, database: str, table: str) -> TableStats:
    row = hook.get_first(
        "SELECT TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND TABLE_TYPE = 'BASE TABLE'",
        parameters=(database, table),
    )
    if row is None:
        raise MigrationStepError(f"table `{database}`.`{table}` does not exist")
    return TableStats(int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))


def triggers_on(hook, database: str, table: str) -> list[str]:
    rows = hook.get_records(
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
        "WHERE TRIGGER_SCHEMA = %s AND EVENT_OBJECT_TABLE = %s ORDER BY TRIGGER_NAME",
        parameters=(database, table),
    )
    return [r[0] for r in rows]


def drop_triggers(hook, database: str, names: list[str], bound: LockBound, log=None) -> None:
    """DROP TRIGGER locks the live table like any DDL: under the lock bound, never an open-ended wait."""
    if names:
        bounded_ddl.run(hook, [f"DROP TRIGGER IF EXISTS {qualified(database, name)}" for name in names], bound,
                        f"DROP TRIGGER {', '.join(names)} in `{database}`", log)


def ensure_database(hook, database: str) -> None:
    hook.run(f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)}")


def trash_database(settings: Settings, database: str) -> str:
    """The pending-drops database for a migration (empty setting = its own database)."""
    return settings.pending_drops_db or database


def retire_table(hook, settings: Settings, database: str, table: str, now: datetime | None = None,
                 log=None) -> str:
    """Move a table to pending drops under a timestamped name, or drop it when trash is off.

    Returns where it went (``db.name``) or ``"dropped"``, for the log. Under the lock bound.
    Its foreign keys go first: a retired table must not hold a parent's rows hostage (1451)
    nor collide in pending drops on a constraint name (see ``foreign_key_names``).
    """
    bound = LockBound.of(settings)
    if not settings.enable_trash:
        bounded_ddl.run(hook, [f"DROP TABLE IF EXISTS {qualified(database, table)}"], bound,
                        f"DROP TABLE `{database}`.`{table}`", log)
        return "dropped"
    target_db = trash_database(settings, database)
    foreign_key_names.drop_all(hook, database, table, bound, log)
    ensure_database(hook, target_db)
    target = timestamped_name(table, now)
    bounded_ddl.run(hook, [f"RENAME TABLE {qualified(database, table)} TO {qualified(target_db, target)}"], bound,
                    f"RENAME TABLE `{database}`.`{table}` to pending drops", log)
    return f"{target_db}.{target}"
