"""Column defaults whose value differs per row (or per moment): instant DDL must not apply them.

``ALTER TABLE ... ADD COLUMN c ... DEFAULT (FLOOR(RAND()*16)), ALGORITHM=INSTANT`` evaluates the
default once and gives every existing row that one value, while pt-osc's copy inserts each row
and so evaluates it per row, as the DDL's author meant. An empty probe table cannot tell the
two apart, so the default expression itself is read: one that calls a random, UUID,
clock, sequence or session function is copied by pt-osc.
"""

from __future__ import annotations

from shift_provider.mysql.sql import tokenize

NONDETERMINISTIC = frozenset({
    "RAND", "RANDOM_BYTES", "UUID", "UUID_SHORT", "SYS_GUID",
    "NOW", "CURRENT_TIMESTAMP", "LOCALTIME", "LOCALTIMESTAMP", "CURTIME", "CURRENT_TIME", "CURDATE",
    "CURRENT_DATE", "SYSDATE", "UNIX_TIMESTAMP", "UTC_TIMESTAMP", "UTC_DATE", "UTC_TIME",
    "NEXTVAL", "LASTVAL", "SETVAL", "NEXT", "PREVIOUS",  # sequences (NEXT VALUE FOR s, PREVIOUS VALUE FOR s)
    "CONNECTION_ID", "LAST_INSERT_ID", "USER", "CURRENT_USER", "SESSION_USER", "SYSTEM_USER", "CURRENT_ROLE",
})


def _default_expression(tokens: list[tuple[str, str]], start: int) -> list[str]:
    """The words of the expression after a DEFAULT at ``start`` (a parenthesised one, or a literal,
    a name, or a function call)."""
    i = start
    if i < len(tokens) and tokens[i] == ("punct", "("):
        depth, words = 0, []
        while i < len(tokens):
            kind, text = tokens[i]
            if (kind, text) == ("punct", "("):
                depth += 1
            elif (kind, text) == ("punct", ")"):
                depth -= 1
                if depth == 0:
                    break
            elif kind == "word":
                words.append(text.upper())
            i += 1
        return words
    if i < len(tokens) and tokens[i][0] == "word":
        words = [tokens[i][1].upper()]
        if words[0] in ("NEXT", "PREVIOUS"):  # NEXT VALUE FOR seq
            return words
        if i + 1 < len(tokens) and tokens[i + 1] == ("punct", "("):
            words += _default_expression(tokens, i + 1)
        return words
    return []


def nondeterministic_default(clause: str) -> str | None:
    """Why the ALTER's defaults differ per row (None when every default is one constant value)."""
    try:
        tokens = [t for t in tokenize(clause) if t[0] not in ("ws", "comment")]
    except ValueError:
        return None  # unparseable: the instant check's own parse reports it
    for i, (kind, text) in enumerate(tokens):
        if kind != "word" or text.upper() != "DEFAULT":
            continue
        before = tokens[i - 1][1].upper() if i > 0 and tokens[i - 1][0] == "word" else ""
        if before in ("UPDATE", "SET"):  # ON UPDATE ...; SET DEFAULT changes no existing row on either path
            continue
        found = sorted(set(_default_expression(tokens, i + 1)) & NONDETERMINISTIC)
        if found:
            return (f"a column default calls {', '.join(found)}, whose value differs per row or per moment: "
                    "ALGORITHM=INSTANT would give every existing row the one value it computes once, pt-osc's "
                    "copy computes it for each row")
    return None
