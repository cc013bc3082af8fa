"""Just enough DDL parsing to know what a migration touches: table, mode and action.

The Rails API does this with its OscParser; the runner relies on the answer to pick
its code path, so a statement we cannot classify is refused at creation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shift_provider.contract.codes import Action, Mode, RunType

_NAME = r"(?:`(?:[^`]|``)+`|[A-Za-z0-9_$]+)"
_VIEW_OPTIONS = (
    r"(?:OR\s+REPLACE\s+)?(?:ALGORITHM\s*=\s*\w+\s+)?(?:DEFINER\s*=\s*\S+\s+)?(?:SQL\s+SECURITY\s+\w+\s+)?"
)
_STATEMENT = re.compile(
    rf"""^\s*(?P<verb>CREATE|DROP|ALTER)\s+
    (?:(?P<view_opts>{_VIEW_OPTIONS}))?
    (?P<kind>TABLE|VIEW)\s+
    (?:IF\s+(?:NOT\s+)?EXISTS\s+)?
    (?P<first>{_NAME})(?:\s*\.\s*(?P<second>{_NAME}))?
    (?P<rest>(?:\s|\(|$).*)$""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)
MAX_IDENTIFIER = 64


class DdlError(ValueError):
    """The statement is not one shift can run."""


@dataclass(frozen=True)
class ParsedDdl:
    table: str
    database: str | None
    mode: Mode
    action: Action

    @property
    def default_runtype(self) -> RunType:
        """CREATE/DROP run directly; an ALTER goes through pt-osc unless a human says otherwise."""
        return RunType.LONG if self.action == Action.ALTER else RunType.SHORT


def _unquote(name: str) -> str:
    if name.startswith("`"):
        return name[1:-1].replace("``", "`")
    return name


def parse_ddl(statement: str) -> ParsedDdl:
    """Classify one CREATE/DROP/ALTER TABLE/VIEW statement; raise DdlError otherwise."""
    if not isinstance(statement, str) or not statement.strip():
        raise DdlError("Ddl statement can't be blank.")
    text = statement.strip()
    if text.endswith(";"):
        text = text[:-1].rstrip()
    if ";" in text:
        raise DdlError("Ddl statement must be a single statement (no ';').")
    match = _STATEMENT.match(text)
    if not match:
        raise DdlError("Ddl statement is not a CREATE, DROP or ALTER of a TABLE or VIEW.")
    verb, kind = match["verb"].upper(), match["kind"].upper()
    if match["view_opts"] and (kind != "VIEW" or verb == "DROP"):
        raise DdlError("Ddl statement has view options on something that is not a view.")
    if match["second"]:
        database, table = _unquote(match["first"]), _unquote(match["second"])
    else:
        database, table = None, _unquote(match["first"])
    for what, name in (("Table", table), ("Database", database)):
        if name is not None and (not name or len(name) > MAX_IDENTIFIER or "\x00" in name):
            raise DdlError(f"{what} name {name!r} is not valid.")
    rest = match["rest"].strip()
    if verb == "ALTER" and kind == "TABLE" and not rest:
        raise DdlError("Ddl statement alters nothing.")
    if verb == "CREATE" and not rest:
        raise DdlError("Ddl statement creates nothing.")
    if verb == "DROP" and rest:
        raise DdlError("Ddl statement must drop exactly one table or view.")
    return ParsedDdl(
        table=table,
        database=database,
        mode=Mode.VIEW if kind == "VIEW" else Mode.TABLE,
        action={"CREATE": Action.CREATE, "DROP": Action.DROP, "ALTER": Action.ALTER}[verb],
    )
