"""Whose copy leftovers (shadow table, pt-osc triggers) are on a table: one migration per table at a time.

pt-osc 3.2.1 names its triggers after the table alone, so two copies of one table
cannot coexist; a copy that treated any ``pt_osc_*`` trigger and ``_<table>_new`` as
"an earlier attempt" dropped another migration's, and that migration's rename then
swapped in the wrong table. Now each shadow table carries its migration's id
(``ptosc.shadow_table_name``) and pt-osc's triggers write into it, so every leftover
names its owner. Copy, cancel and rename act only on their own; a step that finds
another migration's leftovers refuses, naming that migration, and touches nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shift_provider import ptosc
from shift_provider.exceptions import MigrationStepError

_QUOTED = re.compile(r"`((?:[^`]|``)+)`")


@dataclass(frozen=True)
class Leftover:
    """A shadow table or a trigger writing into one; ``owner`` None when its name holds no id."""

    kind: str  # "shadow table" | "trigger"
    name: str
    shadow: str  # the shadow table it is, or writes into ("" for a pt-osc trigger writing elsewhere)
    owner: int | None

    def describe(self) -> str:
        return f"{self.kind} `{self.name}`"


def _shadow_and_owner(table: str, name: str) -> tuple[str, int | None] | None:
    owner = ptosc.shadow_owner(table, name)
    if owner is not None:
        return name, owner
    if name == ptosc.legacy_shadow_table_name(table):
        return name, None
    return None


def find(hook, database: str, table: str) -> list[Leftover]:
    """Every copy leftover of ``database.table``: its shadow tables and the triggers writing into them.

    A pt-osc-named trigger whose body names no shadow table is listed too (owner
    unknown): nobody may drop it without a human looking.
    """
    found: list[Leftover] = []
    rows = hook.get_records("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                            "AND TABLE_NAME LIKE %s", parameters=(database, r"\_%\_new%"))
    for (name,) in sorted(rows):
        hit = _shadow_and_owner(table, name)
        if hit:
            found.append(Leftover("shadow table", name, hit[0], hit[1]))
    ptosc_names = set(ptosc.trigger_names(database, table))
    rows = hook.get_records("SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS "
                            "WHERE TRIGGER_SCHEMA = %s AND EVENT_OBJECT_TABLE = %s ORDER BY TRIGGER_NAME",
                            parameters=(database, table))
    for name, body in rows:
        targets = [_shadow_and_owner(table, m.replace("``", "`")) for m in _QUOTED.findall(body or "")]
        targets = [t for t in targets if t]
        if targets:
            found.append(Leftover("trigger", name, targets[0][0], targets[0][1]))
        elif name in ptosc_names:
            found.append(Leftover("trigger", name, "", None))
    return found


def owned(leftover: Leftover, migration_id: int, recorded_shadow: str = "") -> bool:
    """This migration's: its id is in the shadow's name, or its state file recorded that shadow table."""
    return leftover.owner == migration_id or bool(recorded_shadow and leftover.shadow == recorded_shadow)


def split(hook, database: str, table: str, migration_id: int,
          recorded_shadow: str = "") -> tuple[list[Leftover], list[Leftover]]:
    """(this migration's leftovers, everyone else's)."""
    mine: list[Leftover] = []
    others: list[Leftover] = []
    for leftover in find(hook, database, table):
        (mine if owned(leftover, migration_id, recorded_shadow) else others).append(leftover)
    return mine, others


def refusal(database: str, table: str, migration_id: int, others: list[Leftover]) -> str:
    """The message naming the migration(s) whose leftovers block this one."""
    owners = sorted({o.owner for o in others if o.owner is not None})
    who = ", ".join(f"migration {o}" for o in owners)
    if any(o.owner is None for o in others):
        who = (who + " and " if who else "") + "a migration of unknown id (a name without an id: an earlier " \
                                               "runner version, or a copy by hand)"
    things = ", ".join(o.describe() for o in others)
    return (f"table `{database}`.`{table}` carries the copy leftovers of {who} ({things}): only one migration "
            f"may change a table at a time, so migration {migration_id} stops here and touches none of them. "
            "Finish (rename) or cancel that migration first, then resume this one")


def refuse_others(hook, database: str, table: str, migration_id: int, recorded_shadow: str = "") -> list[Leftover]:
    """Raise when another migration's leftovers are on the table; else this migration's own."""
    mine, others = split(hook, database, table, migration_id, recorded_shadow)
    if others:
        raise MigrationStepError(refusal(database, table, migration_id, others))
    return mine
