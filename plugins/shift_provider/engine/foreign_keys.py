"""Prepare: which pt-osc ALTERs foreign keys rule out.

A table other tables' foreign keys reference (a parent, or a table referencing
itself) is always refused: pt-osc would have to rewrite those children's
constraints (``--alter-foreign-keys-method``), which is SQL on tables that are not
the migration's, and with ``--no-swap-tables`` it cannot do that at all.

A child table (its own foreign keys, or an ALTER adding one) is refused by default,
as the shift UI refuses them; ``allow_foreign_keys: true`` lets it through, and then
``foreign_key_names`` gives pt-osc's renamed constraints their names back after the
swap and strips a retired table's constraints, so nothing of the copy holds a live
parent or collides in pending drops.
"""

from __future__ import annotations

from shift_provider.mysql.sql import tokenize


def _describe(rows) -> list[str]:
    return [f"`{r[2]}` (`{r[0]}`.`{r[1]}` -> `{r[3]}`.`{r[4]}`)" for r in rows]


def _select(hook, where: str, parameters: tuple) -> list:
    return hook.get_records(
        "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME "
        f"FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE {where} ORDER BY 1, 2, 3", parameters=parameters)


def referencing(hook, database: str, table: str) -> list[str]:
    """The foreign keys that reference the table (it is their parent), described for a human."""
    return _describe(_select(hook, "UNIQUE_CONSTRAINT_SCHEMA = %s AND REFERENCED_TABLE_NAME = %s",
                             (database, table)))


def constraints(hook, database: str, table: str) -> list[str]:
    """The table's own foreign keys (it is the child), described for a human."""
    return _describe(_select(hook, "CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s", (database, table)))


def adds_foreign_key(clause: str) -> bool:
    try:
        words = [t[1].upper() for t in tokenize(clause) if t[0] == "word"]
    except ValueError:
        return False
    return "REFERENCES" in words or any(words[i:i + 2] == ["FOREIGN", "KEY"] for i in range(len(words)))


def refusal(hook, database: str, table: str, clause: str, allowed: bool) -> str | None:
    """Why this pt-osc ALTER is refused for foreign keys (None when it may run)."""
    parents = referencing(hook, database, table)
    if parents:
        return (f"refusing this ALTER of `{database}`.`{table}`: foreign keys {', '.join(parents)} reference it. "
                "pt-online-schema-change would have to rebuild those tables' constraints to point at the new "
                "table (--alter-foreign-keys-method), which changes tables other than the migration's own; "
                "shift never does that, whatever allow_foreign_keys says. Run it as a short run (ALTER in "
                "place) instead")
    found = constraints(hook, database, table)
    if allowed or (not found and not adds_foreign_key(clause)):
        return None
    what = f"foreign keys {', '.join(found)}" if found else "the ALTER adds a foreign key"
    return (f"refusing this ALTER of `{database}`.`{table}`: {what}. shift refuses foreign keys by default "
            "(as its UI does); set allow_foreign_keys: true in the runner settings to run it: the constraint "
            "names then come out as asked and the retired table keeps no foreign key")
