"""DDL admission: the runner runs a DDL only when it reaches nothing beyond the migration's own table.

``parse_ddl`` proves the statement changes the migration's table; this module refuses the
clauses that, inside such a statement, still reach other tables, other databases, other
servers or the table's data files. Found on real MariaDB: pt-osc's ``--dry-run`` applies
the clause to its empty ``_t_new``, so ``EXCHANGE PARTITION p0 WITH TABLE payroll`` emptied
``payroll`` at prepare; a CREATE validated by running it copied ``other_db.secrets`` into
the binlog; ``DISCARD TABLESPACE`` as a short run deleted the table's data file.

It reads tokens only (no SQL runs), so it can stand in front of every path: prepare
(final-insert check, dry run, instant probe, stats), the short run, the copy and the
rename. Each refusal is one sentence a requester can act on.
"""

from __future__ import annotations

from shift_provider.contract.codes import Action, Mode
from shift_provider.mysql.sql import ParsedDDL, alter_items, tokenize

# Engines that keep rows on disk like the table had them. BLACKHOLE discards every row,
# MEMORY loses them at restart, MERGE/FEDERATED/CONNECT/SPIDER read other tables or servers.
ENGINE_NAMES = ("InnoDB", "Aria", "MyISAM")
ALLOWED_ENGINES = frozenset(name.upper() for name in ENGINE_NAMES)


class OutOfScope(ValueError):
    """The DDL reaches beyond the migration's own table."""


def check(parsed: ParsedDDL, ddl: str, database: str) -> None:
    """Raise ``OutOfScope`` with the reason when the DDL must not run for a migration on ``database``."""
    text = ddl.strip()
    text = text[:-1] if text.endswith(";") else text  # as parse_ddl reads it
    tokens = [(k, t) for k, t in tokenize(text) if k not in ("ws", "comment")]
    words = [t.upper() if k == "word" else None for k, t in tokens]
    clause = [k for k, _ in tokenize(parsed.alter_clause or "") if k not in ("ws", "comment")]
    clause_start = len(tokens) - len(clause) if parsed.alter_clause else -1
    if parsed.action == Action.ALTER:
        _alter_items(parsed.alter_clause or "")
    if parsed.action != Action.DROP:
        _copies_rows(parsed, words)
        options = _option_positions(tokens, words, parsed.action, clause_start)
        _engines(tokens, words, options)
        if parsed.mode == Mode.TABLE:
            _foreign_places(words, options)
        _other_database(tokens, words, database, parsed)


def reason(parsed: ParsedDDL, ddl: str, database: str) -> str | None:
    """The refusal message, or None when the DDL is in scope."""
    try:
        check(parsed, ddl, database)
    except OutOfScope as exc:
        return str(exc)
    return None


def _alter_items(clause: str) -> None:
    for item in alter_items(clause):
        head, second = item[0], item[1] if len(item) > 1 else ""
        if head in ("DISCARD", "IMPORT"):
            raise OutOfScope(f"{head} ... TABLESPACE detaches or replaces the table's data files; shift never runs it")
        if head == "EXCHANGE":
            raise OutOfScope("EXCHANGE PARTITION swaps rows with another table; shift only changes the migration's "
                             "own table")
        if head == "CONVERT" and second in ("TABLE", "PARTITION"):
            raise OutOfScope(f"CONVERT {second} moves rows between the table and another table; shift only changes "
                             "the migration's own table")


def _copies_rows(parsed: ParsedDDL, words: list[str | None]) -> None:
    """CREATE ... SELECT (or a subquery anywhere in a table DDL) writes rows read from elsewhere."""
    if parsed.mode == Mode.VIEW:
        return  # a view's body is its SELECT; it copies nothing (its references are checked below)
    if "SELECT" in words:
        raise OutOfScope("CREATE ... SELECT (or a SELECT inside the DDL) copies rows from other tables; file the "
                         "CREATE alone and move data separately")


def _engines(tokens: list[tuple[str, str]], words: list[str | None], options: list[bool]) -> None:
    for i, word in enumerate(words):
        if word != "ENGINE" or not options[i]:
            continue
        j = i + 1 + (tokens[i + 1:i + 2] == [("punct", "=")])
        if j >= len(tokens):
            raise OutOfScope("ENGINE names no engine")
        name_kind, name = tokens[j]
        name = name.strip("'\"") if name_kind == "string" else name
        if name.upper() not in ALLOWED_ENGINES:
            raise OutOfScope(f"ENGINE={name} is not allowed (only {', '.join(ENGINE_NAMES)}): it can lose "
                             "the rows or keep them outside this table")


def _option_positions(tokens: list[tuple[str, str]], words: list[str | None], action: Action,
                      clause_start: int) -> list[bool]:
    """For each token: does a table (or partition) option start here?

    So that a column named like an option (``ADD COLUMN engine VARCHAR(9)``, ``connection INT``)
    is not taken for one: an option is followed by ``=`` or a string, follows ``)`` or
    ``STORAGE``, or in an ALTER starts an alteration of its own.
    """
    result = []
    depth = 0
    for i, (kind, text) in enumerate(tokens):
        depth += (text == "(") - (text == ")") if kind == "punct" else 0
        following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        prev = tokens[i - 1] if i else ("", "")
        result.append(kind == "word" and (
            following == ("punct", "=") or following[0] == "string" or prev == ("punct", ")")
            or words[i - 1] == "STORAGE"
            or (action == Action.ALTER and depth == 0 and (i == clause_start or prev == ("punct", ",")))))
    return result


def _foreign_places(words: list[str | None], options: list[bool]) -> None:
    """Options that put the table's files elsewhere or make it a window on other tables or servers."""
    for i, word in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else None
        if word in ("DATA", "INDEX") and following == "DIRECTORY":
            raise OutOfScope(f"{word} DIRECTORY puts the table's files outside its database directory")
        if word == "UNION":  # a reserved word: a column of that name is quoted
            raise OutOfScope("UNION= makes the table a window on other tables (MERGE)")
        if word == "CONNECTION" and options[i]:
            raise OutOfScope("CONNECTION= makes the table a window on another server")
        if word == "TABLESPACE" and options[i]:
            raise OutOfScope("TABLESPACE moves or detaches the table's data files")


def _other_database(tokens: list[tuple[str, str]], words: list[str | None], database: str,
                    parsed: ParsedDDL) -> None:
    """REFERENCES, LIKE (and a view's FROM/JOIN) naming ``db.table`` of another database."""
    heads = {"REFERENCES", "LIKE"} | ({"FROM", "JOIN"} if parsed.mode == Mode.VIEW else set())
    for i, word in enumerate(words):
        if word not in heads:
            continue
        j = i + 1 + (tokens[i + 1:i + 2] == [("punct", "(")])  # CREATE TABLE x (LIKE y)
        name = tokens[j:j + 3]
        if len(name) == 3 and name[0][0] in ("word", "qident") and name[1] == ("punct", ".") \
                and name[2][0] in ("word", "qident") and name[0][1] != database:
            what = {"REFERENCES": "a foreign key to", "LIKE": "a copy of the definition of"}.get(word, "a view on")
            raise OutOfScope(f"{word} {name[0][1]}.{name[2][1]}: {what} a table in another database "
                             f"({name[0][1]!r}, not {database!r}); shift only touches the migration's database")
