"""Run one SQL statement on a cursor and log it once, with its effect.

Why: Airflow's ``DbApiHook.run`` logs a bare ``Rows affected: N`` after every
statement (reads included) and, with ``log_sql``, the statement on another line, so
a rename's task log held a dozen numbers nobody could tie to a statement. Every
statement of the cluster hook (``ShiftClusterHook._run_command``) and the steps'
own cursors go through ``execute`` here instead: one line per statement that
changes something (``ran: <statement>: <effect>``) at INFO, reads
(SELECT/SHOW) at DEBUG, so the log tells what the runner did to a database.
"""

from __future__ import annotations

import logging
from typing import Any

READ_WORDS = ("SELECT", "SHOW", "WITH", "DESCRIBE", "EXPLAIN")
DML_WORDS = ("INSERT", "UPDATE", "DELETE", "REPLACE")
MAX_LOGGED_CHARS = 2000


def executed_text(cur: Any, statement: str) -> str:
    """The statement as the server got it (parameters bound, by MySQLdb), else as written."""
    sent = getattr(cur, "_executed", None)
    if isinstance(sent, bytes):
        sent = sent.decode("utf-8", errors="replace")
    text = " ".join(str(sent or statement).split())
    return text if len(text) <= MAX_LOGGED_CHARS else text[:MAX_LOGGED_CHARS] + " …"


def is_read(statement: str) -> bool:
    return statement.lstrip(" (\n\t").upper().startswith(READ_WORDS)


def effect(statement: str, rowcount: int | None) -> str:
    """What a statement did, in words: rows for DML and reads, "ok" for DDL and SET (their count means nothing)."""
    head = statement.lstrip(" (\n\t").upper()
    if rowcount is None or rowcount < 0:
        return "ok"
    if is_read(statement):
        return f"{rowcount} row{'s' if rowcount != 1 else ''} read"
    if head.startswith(DML_WORDS):
        return f"{rowcount} row{'s' if rowcount != 1 else ''} affected"
    return "ok"


def execute(cur: Any, statement: str, parameters: Any = None, *, log: logging.Logger | Any) -> int | None:
    """``cur.execute`` and one log line; returns the row count. A failure is logged by whoever catches it."""
    if parameters:
        cur.execute(statement, parameters)
    else:
        cur.execute(statement)
    rowcount = getattr(cur, "rowcount", None)
    text = executed_text(cur, statement)
    if is_read(statement):
        log.debug("read: %s: %s", text, effect(statement, rowcount))
    else:
        log.info("ran: %s: %s", text, effect(statement, rowcount))
    return rowcount
