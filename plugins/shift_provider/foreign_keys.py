"""Foreign keys are refused at prepare unless the settings allow them (the shift UI refuses them too).

pt-osc copies a child table into a new one whose constraints it must rename (``fk`` ->
``_fk``), so the schema differs from what was asked; the old table retired to pending
drops keeps its constraint to the live parent (deleting a parent row then fails with
1451 naming the retired table), and a second such table in pending drops collides on
the constraint name after the swap. A parent table's children keep pointing at the
retired table. Until each of those is handled, refusing up front is the safe answer.
"""

from __future__ import annotations

from shift_provider.sql import tokenize


def constraints(hook, database: str, table: str) -> list[str]:
    """The foreign keys that hold the table as child or as parent, described for a human."""
    rows = hook.get_records(
        "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME "
        "FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE (CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s) "
        "OR (UNIQUE_CONSTRAINT_SCHEMA = %s AND REFERENCED_TABLE_NAME = %s) ORDER BY 1, 2, 3",
        parameters=(database, table, database, table))
    return [f"`{r[2]}` (`{r[0]}`.`{r[1]}` -> `{r[3]}`.`{r[4]}`)" for r in rows]


def adds_foreign_key(clause: str) -> bool:
    try:
        words = [t[1].upper() for t in tokenize(clause) if t[0] == "word"]
    except ValueError:
        return False
    return "REFERENCES" in words or any(words[i:i + 2] == ["FOREIGN", "KEY"] for i in range(len(words)))


def refusal(hook, database: str, table: str, clause: str) -> str | None:
    """Why this pt-osc ALTER is refused for foreign keys (None when none are involved)."""
    found = constraints(hook, database, table)
    if not found and not adds_foreign_key(clause):
        return None
    what = f"foreign keys {', '.join(found)}" if found else "the ALTER adds a foreign key"
    return (f"refusing this ALTER of `{database}`.`{table}`: {what}. pt-online-schema-change renames a child "
            "table's constraints, the retired table keeps its constraint to the live parent and pending drops "
            "can collide on constraint names, so shift refuses foreign keys; set allow_foreign_keys: true in "
            "the runner settings to run it anyway")
