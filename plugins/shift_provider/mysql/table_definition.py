"""A table's definition, the one place that reads it: as text, as a hash, and as comparable parts.

``definition``/``definition_hash``: SHOW CREATE TABLE without the table's name and
the moving AUTO_INCREMENT counter: did an ALTER happen (short runs, instant DDL), is a
new table the original's twin (rename).

pt-osc builds the shadow table from the original's definition at copy time. If the
original changes afterwards (a short-run migration or a DBA adds a column and fills
it), the triggers keep copying only the columns they know, and a swap would silently
drop the new column with its data. The copy records this fingerprint in the state
file; the rename compares it with the live table and names every difference.
"""

from __future__ import annotations

import hashlib
import re

from shift_provider.mysql.sql import qualified

_NAME = re.compile(r"^(?P<head>[A-Z ]*?)\s*`(?P<name>(?:[^`]|``)+)`")
_AUTO_INCREMENT = re.compile(r" AUTO_INCREMENT=\d+")


def definition(hook, database: str, table: str) -> str:
    """SHOW CREATE TABLE without the table's name and AUTO_INCREMENT counter, to compare two tables or two moments."""
    row = hook.get_first(f"SHOW CREATE TABLE {qualified(database, table)}")
    text = row[1].split("\n", 1)[1] if row and "\n" in row[1] else (row[1] if row else "")
    return _AUTO_INCREMENT.sub("", text)


def definition_hash(hook, database: str, table: str) -> str:
    """sha256 of ``definition``: what a state file records to tell later whether the table changed."""
    return hashlib.sha256(definition(hook, database, table).encode()).hexdigest()


def parts(create_table: str) -> dict[str, str]:
    """``SHOW CREATE TABLE`` text as {"column `a`": its line, "index `k`": ..., "table options": ...}.

    The AUTO_INCREMENT counter is left out: writes move it, it is not the definition.
    """
    lines = create_table.split("\n")[1:]
    found: dict[str, str] = {}
    options: list[str] = []
    in_body = True
    for raw in lines:
        line = raw.strip().rstrip(",")
        if in_body and raw.startswith(")"):
            in_body = False
            line = raw[1:].strip()
        if not in_body:
            if line:
                options.append(_AUTO_INCREMENT.sub("", " " + line).strip())
            continue
        if line.startswith("`"):
            name = _NAME.match(line)
            found[f"column `{name['name'] if name else line}`"] = line
        elif line.startswith("PRIMARY KEY"):
            found["primary key"] = line
        else:
            name = _NAME.match(line)
            kind = "constraint" if line.startswith("CONSTRAINT") else "index"
            found[f"{kind} `{name['name']}`" if name else line] = line
    found["table options"] = " ".join(options)
    return found


def fingerprint(hook, database: str, table: str) -> dict[str, str]:
    row = hook.get_first(f"SHOW CREATE TABLE {qualified(database, table)}")
    return parts(row[1]) if row else {}


def differences(before: dict[str, str], now: dict[str, str]) -> list[str]:
    """Each change from ``before`` to ``now``, in words naming the column, index or option."""
    changes = [f"{key} was added ({now[key]})" for key in now if key not in before]
    changes += [f"{key} was removed (was: {before[key]})" for key in before if key not in now]
    changes += [f"{key} changed from ({before[key]}) to ({now[key]})" for key in before
                if key in now and before[key] != now[key]]
    return changes
