"""A child table's foreign keys through pt-osc's copy: names as asked, none left on a retired table.

pt-osc creates its shadow table from SHOW CREATE TABLE with every constraint renamed
(``fk`` -> ``_fk``, ``_fk`` -> ``__fk``, ``__fk`` -> ``fk``): InnoDB names foreign keys
per database, so the shadow table cannot hold ``fk`` while the live table does. For
the same reason the name cannot be put back on the shadow table before the swap, and
no ``--alter-foreign-keys-method`` helps (those rewrite the *children* of a parent
table). So the names are put back right after the swap, in this order:

1. before the swap, ``renames`` maps each renamed constraint of the shadow table to
   the live table's own name (saved in the state file: the retry after a swap needs it);
2. after the swap, ``drop_all`` removes the old table's foreign keys: the name is
   freed, and the old table, retired to pending drops, no longer holds a constraint
   to a live parent (deleting a parent row would fail with 1451 naming it) nor one
   whose name can collide there (MariaDB reports that as a misleading 1050);
3. ``restore`` renames the live table's constraints back: one ALTER per constraint,
   ``DROP FOREIGN KEY _fk, ADD CONSTRAINT fk ...`` with ``foreign_key_checks=0`` so
   it is in place, metadata only (the rows were checked by the very same constraint).

Each step looks at the database first, so it can run again after a failure; every
statement runs under the lock bound (``bounded_ddl``). ``drop_all`` is also what
every table moved to pending drops goes through first (``schema_ops.retire_table``,
``rename_steps.retire_old_table``): no constraint name ever reaches pending drops.

An ALTER that drops one of the child's foreign keys must name it as pt-osc does on
the shadow table (``DROP FOREIGN KEY _fk``, pt-osc's documented rule); prepare's dry
run fails otherwise, with pt-osc's reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from shift_provider.mysql import bounded_ddl, statement_log
from shift_provider.mysql.bounded_ddl import LockBound
from shift_provider.mysql.sql import MAX_NAME, qualified, quote_ident


@dataclass(frozen=True)
class ForeignKey:
    """One foreign key of a child table, as information_schema describes it."""

    name: str
    columns: tuple[str, ...]
    parent_schema: str
    parent_table: str
    parent_columns: tuple[str, ...]
    on_update: str
    on_delete: str

    def definition(self, name: str) -> str:
        """``CONSTRAINT name FOREIGN KEY (...) REFERENCES ...``, every identifier quoted."""
        cols = ", ".join(quote_ident(c) for c in self.columns)
        parent_cols = ", ".join(quote_ident(c) for c in self.parent_columns)
        return (f"CONSTRAINT {quote_ident(name)} FOREIGN KEY ({cols}) REFERENCES "
                f"{qualified(self.parent_schema, self.parent_table)} ({parent_cols}) "
                f"ON DELETE {self.on_delete} ON UPDATE {self.on_update}")


_RULES = frozenset({"RESTRICT", "CASCADE", "SET NULL", "NO ACTION", "SET DEFAULT"})


def of_table(hook, database: str, table: str) -> list[ForeignKey]:
    """The table's own foreign keys (it is the child), columns in their order."""
    rules = hook.get_records(
        "SELECT CONSTRAINT_NAME, UPDATE_RULE, DELETE_RULE, UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME "
        "FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s "
        "ORDER BY CONSTRAINT_NAME", parameters=(database, table))
    found = []
    for name, on_update, on_delete, parent_schema, parent_table in rules:
        cols = hook.get_records(
            "SELECT COLUMN_NAME, REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
            "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s AND CONSTRAINT_NAME = %s "
            "AND REFERENCED_TABLE_NAME IS NOT NULL ORDER BY ORDINAL_POSITION", parameters=(database, table, name))
        if on_update not in _RULES or on_delete not in _RULES:  # never pass unknown words into DDL
            raise ValueError(f"foreign key `{name}` has rules {on_update!r}/{on_delete!r}")
        found.append(ForeignKey(name, tuple(c[0] for c in cols), parent_schema, parent_table,
                                tuple(c[1] for c in cols), on_update, on_delete))
    return found


def ptosc_name(name: str) -> str:
    """The name pt-osc 3.2.1 gives a constraint in its shadow table (``__`` off, else one ``_`` more)."""
    renamed = name[2:] if name.startswith("__") else f"_{name}"
    return renamed[:MAX_NAME]


def renames(hook, database: str, table: str, new_table: str) -> dict[str, str]:
    """{shadow table's constraint: the live table's name for it}, for the constraints pt-osc renamed.

    A constraint the ALTER adds keeps its name on the shadow table and is not in here.
    """
    shadow = {fk.name for fk in of_table(hook, database, new_table)}
    return {ptosc_name(fk.name): fk.name for fk in of_table(hook, database, table)
            if ptosc_name(fk.name) in shadow and ptosc_name(fk.name) != fk.name}


def drop_all(hook, database: str, table: str, bound: LockBound, log=None) -> list[str]:
    """Drop every foreign key of ``table`` (a retired or shadow table), bounded; returns their names."""
    names = [fk.name for fk in of_table(hook, database, table)]
    if names:
        bounded_ddl.run(hook, [f"ALTER TABLE {qualified(database, table)} "
                               + ", ".join(f"DROP FOREIGN KEY {quote_ident(n)}" for n in names)],
                        bound, f"dropping the foreign keys of `{database}`.`{table}`", log)
    return names


def restore(hook, database: str, table: str, wanted: dict[str, str], bound: LockBound, log=None) -> list[str]:
    """Rename the live table's constraints back as ``wanted`` says; returns the names restored now.

    ``foreign_key_checks=0`` makes ADD FOREIGN KEY in place (no copy, no row scan): the
    rows already satisfy the identical constraint dropped in the same statement.
    """
    present = {fk.name: fk for fk in of_table(hook, database, table)}
    todo = [(present[shadow_name], asked) for shadow_name, asked in sorted(wanted.items())
            if shadow_name in present and asked not in present]
    if not todo:
        return []
    with bounded_ddl.session(hook, bound, log) as cur:
        statement_log.execute(cur, "SET SESSION foreign_key_checks = 0", log=log)
        for fk, asked in todo:
            bounded_ddl.execute(
                cur, f"ALTER TABLE {qualified(database, table)} DROP FOREIGN KEY {quote_ident(fk.name)}, "
                     f"ADD {fk.definition(asked)}, ALGORITHM=INPLACE, LOCK=NONE",
                bound, f"renaming foreign key `{fk.name}` of `{database}`.`{table}` back to `{asked}`", log)
    return [asked for _, asked in todo]
