"""Abandon a copy that will never be swapped in: pt-osc's triggers off the live table, its shadow retired.

A failed or refused copy must not leave its triggers behind: they burden every write to the
live table, and break them when the shadow table cannot take a row the application writes.
The callers have already checked (``leftovers``) that what is on the table is this migration's.
"""

from __future__ import annotations

from shift_provider import ptosc
from shift_provider.mysql import schema_ops
from shift_provider.mysql.bounded_ddl import LockBound
from shift_provider.settings import Settings


def ptosc_triggers(hook, database: str, table: str) -> list[str]:
    """The triggers pt-osc left on a table (named pt_osc_<db>_<table>_ins/upd/del)."""
    return [name for name in schema_ops.triggers_on(hook, database, table) if name.startswith(ptosc.TRIGGER_PREFIX)]


def remove_triggers(hook, settings: Settings, database: str, table: str, log=None) -> list[str]:
    """Drop pt-osc's triggers from the live table (bounded); returns their names."""
    names = ptosc_triggers(hook, database, table)
    schema_ops.drop_triggers(hook, database, names, LockBound.of(settings), log)
    return names


def abandon(hook, settings: Settings, database: str, table: str, new_table: str, log=None) -> str:
    """Triggers first, so no write reaches the shadow table any more, then the shadow to pending drops.

    Idempotent. Returns what it did, for the log.
    """
    names = remove_triggers(hook, settings, database, table, log)
    done = [f"dropped triggers {names}" if names else "no triggers left"]
    if schema_ops.table_exists(hook, database, new_table):
        retired = schema_ops.retire_table(hook, settings, database, new_table, log=log)
        done.append(f"shadow table `{new_table}` -> {retired}")
    return "; ".join(done)
