"""SQL text helpers: identifier quoting, DDL parsing, and the old-table name shift derives.

The DDL and the final insert are the only user SQL ever executed; everything
else we build from quoted identifiers here, so a hostile name cannot escape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from shift_provider.contract.codes import Action, Mode

MAX_NAME = 64


def quote_ident(name: str) -> str:
    """Backtick-quote one identifier (a backtick is doubled, a NUL refused)."""
    if not name or "\x00" in name or len(name) > MAX_NAME:
        raise ValueError(f"not a quotable identifier: {name!r}")
    return "`" + name.replace("`", "``") + "`"


def qualified(database: str, table: str) -> str:
    return f"{quote_ident(database)}.{quote_ident(table)}"


def timestamped_name(table: str, now: datetime | None = None) -> str:
    """``YYYYMMDDhhmmssmmm_<table>`` clipped to 64 characters, the name shift gives old tables."""
    now = now or datetime.now(timezone.utc)
    prefix = now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}_"
    return (prefix + table)[:MAX_NAME]


def tokenize(sql: str) -> list[tuple[str, str]]:
    """Split SQL into (kind, text) tokens: ident, qident, string, word, punct, ws, comment."""
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            j = i
            while j < n and sql[j].isspace():
                j += 1
            tokens.append(("ws", sql[i:j]))
            i = j
        elif c == "`":
            j, buf = i + 1, []
            while True:
                if j >= n:
                    raise ValueError("unterminated backtick-quoted identifier")
                if sql[j] == "`":
                    if j + 1 < n and sql[j + 1] == "`":
                        buf.append("`")
                        j += 2
                        continue
                    break
                buf.append(sql[j])
                j += 1
            tokens.append(("qident", "".join(buf)))
            i = j + 1
        elif c in "'\"":
            j = i + 1
            while True:
                if j >= n:
                    raise ValueError("unterminated string literal")
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            tokens.append(("string", sql[i:j + 1]))
            i = j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            if j < 0:
                raise ValueError("unterminated comment")
            tokens.append(("comment", sql[i:j + 2]))
            i = j + 2
        elif c == "#" or sql.startswith("-- ", i) or sql.startswith("--\n", i) or sql.startswith("--\t", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            tokens.append(("comment", sql[i:j]))
            i = j
        elif c.isalnum() or c in "_$" or ord(c) > 127:
            j = i
            while j < n and (sql[j].isalnum() or sql[j] in "_$" or ord(sql[j]) > 127):
                j += 1
            tokens.append(("word", sql[i:j]))
            i = j
        else:
            tokens.append(("punct", c))
            i += 1
    return tokens


def has_statement_separator(sql: str) -> bool:
    """True when a ``;`` stands outside strings, identifiers and comments."""
    return any(kind == "punct" and text == ";" for kind, text in tokenize(sql))


def has_comment(sql: str) -> bool:
    return any(kind == "comment" for kind, _ in tokenize(sql))


@dataclass(frozen=True)
class ParsedDDL:
    """What a DDL statement does, and to what."""

    action: Action
    mode: Mode
    database: str | None
    table: str
    alter_clause: str | None  # the part after the table name, for ALTERs


_DDL_HEAD = {
    ("CREATE", "TABLE"): (Action.CREATE, Mode.TABLE),
    ("CREATE", "VIEW"): (Action.CREATE, Mode.VIEW),
    ("DROP", "TABLE"): (Action.DROP, Mode.TABLE),
    ("DROP", "VIEW"): (Action.DROP, Mode.VIEW),
    ("ALTER", "TABLE"): (Action.ALTER, Mode.TABLE),
}


def parse_ddl(ddl: str) -> ParsedDDL:
    """Parse one CREATE/DROP/ALTER TABLE or CREATE/DROP VIEW statement; refuse anything else."""
    text = ddl.strip()
    if text.endswith(";"):
        text = text[:-1].rstrip()
    tokens = tokenize(text)
    if any(kind == "punct" and t == ";" for kind, t in tokens):
        raise ValueError("ddl_statement holds more than one statement (a ';' outside quotes)")
    if any(kind == "comment" for kind, _ in tokens):
        raise ValueError("ddl_statement must not contain comments")
    significant = [(k, t) for k, t in tokens if k != "ws"]
    words = [t.upper() if k == "word" else None for k, t in significant]
    if not words:
        raise ValueError("ddl_statement is empty")
    pos = 1
    verb = words[0]
    # CREATE [OR REPLACE] [ALGORITHM=..] [DEFINER=..] [SQL SECURITY ..] VIEW is refused: keep it plain.
    if verb == "CREATE" and len(words) > 1 and words[1] == "TEMPORARY":
        raise ValueError("CREATE TEMPORARY TABLE is not a schema migration")
    if len(words) <= pos or (verb, words[pos]) not in _DDL_HEAD:
        raise ValueError(
            "ddl_statement must be CREATE TABLE, CREATE VIEW, ALTER TABLE, DROP TABLE or DROP VIEW; "
            f"got {' '.join(t for _, t in significant[:3])!r}"
        )
    action, mode = _DDL_HEAD[(verb, words[pos])]
    pos += 1
    # Optional IF [NOT] EXISTS.
    if pos < len(words) and words[pos] == "IF":
        expected = ["IF", "NOT", "EXISTS"] if action == Action.CREATE else ["IF", "EXISTS"]
        if words[pos:pos + len(expected)] != expected:
            raise ValueError("malformed IF [NOT] EXISTS in ddl_statement")
        pos += len(expected)
    names, pos = _qualified_name(significant, pos)
    database, table = (None, names[0]) if len(names) == 1 else (names[0], names[1])
    rest = significant[pos:]
    if action == Action.DROP and rest:
        raise ValueError("DROP must name exactly one table or view")
    if any(k == "punct" and t == "," for k, t in rest[:1]):
        raise ValueError("ddl_statement must change exactly one table")
    alter_clause = None
    if action == Action.ALTER:
        alter_clause = _source_after(text, tokens, pos)
        if not alter_clause:
            raise ValueError("ALTER TABLE has no alteration")
        if renames_table(alter_clause):
            raise ValueError("ALTER TABLE ... RENAME TO changes the table's name (so do RENAME AS and RENAME <name>); shift cannot run it")
    return ParsedDDL(action, mode, database, table, alter_clause)


def _qualified_name(significant: list[tuple[str, str]], pos: int) -> tuple[list[str], int]:
    names: list[str] = []
    while True:
        if pos >= len(significant) or significant[pos][0] not in ("word", "qident"):
            raise ValueError("ddl_statement does not name a table")
        names.append(significant[pos][1])
        pos += 1
        if pos < len(significant) and significant[pos] == ("punct", "."):
            pos += 1
            if len(names) >= 2:
                raise ValueError("table name has too many parts")
            continue
        return names, pos


def _source_after(text: str, tokens: list[tuple[str, str]], significant_pos: int) -> str:
    """The original text after the ``significant_pos``-th significant token."""
    seen = 0
    offset = 0
    for kind, t in tokens:
        width = len(t) if kind != "qident" else len(t.replace("`", "``")) + 2
        if kind != "ws":
            if seen == significant_pos:
                break
            seen += 1
        offset += width
    return text[offset:].strip()


def specifications(alter_clause: str) -> list[list[tuple[str, str]]]:
    """The clause's comma-separated specifications (top level only), as significant tokens."""
    specs: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for kind, text in tokenize(alter_clause):
        if kind in ("ws", "comment"):
            continue
        if kind == "punct" and text == "(":
            depth += 1
        elif kind == "punct" and text == ")":
            depth -= 1
        elif kind == "punct" and text == "," and depth == 0:
            specs.append([])
            continue
        specs[-1].append((kind, text))
    return [s for s in specs if s]


def alter_items(clause: str) -> list[list[str]]:
    """The comma-separated alterations of an ALTER clause, each as its upper-cased words and names
    (outside parentheses)."""
    items: list[list[str]] = []
    for spec in specifications(clause):
        words: list[str] = []
        depth = 0
        for kind, text in spec:
            if kind == "punct" and text == "(":
                depth += 1
            elif kind == "punct" and text == ")":
                depth -= 1
            elif kind == "word" and depth == 0:
                words.append(text.upper())
            elif kind == "qident" and depth == 0:
                words.append("`" + text)
        if words:
            items.append(words)
    return items


def renames_table(clause: str) -> bool:
    """True for ``RENAME [TO|AS] new`` (MariaDB allows leaving out TO), not RENAME COLUMN/INDEX/KEY."""
    return any(item[0] == "RENAME" and (len(item) < 2 or item[1] not in ("COLUMN", "INDEX", "KEY"))
               for item in alter_items(clause))
