"""The one way the runner runs DDL on a live table: a bounded metadata-lock wait, with retries.

Every DDL (DROP TRIGGER, RENAME, ALTER, DROP TABLE) needs an exclusive metadata lock
on its table. While it waits for one (a reader's open transaction holds the table),
every new query on that table queues behind the request, so the application's
writes stall exactly as long as the DDL waits, and the server's default
``lock_wait_timeout`` is 86400 s. So each statement the runner issues on a live table
runs here, with ``SET SESSION lock_wait_timeout`` set to the bound (settings
``rename_lock_wait_timeout``) and up to ``rename_retries`` more attempts, pausing
between them so the queued application queries run. When the bound runs out,
nothing changed (a DDL is all or nothing) and ``LockBoundExceeded`` says who holds
the table: a retry of the step finishes the job.

``classify`` is the one definition of which MySQL errors are worth retrying.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

from shift_provider.exceptions import ShiftError
from shift_provider.mysql import statement_log

ER_LOCK_WAIT_TIMEOUT = 1205
ER_LOCK_DEADLOCK = 1213
# Server-side "your connection is going away": the statement is not at fault.
ER_SERVER_SHUTDOWN = 1053
ER_CONNECTION_KILLED = 1927
# Client error codes (2002 can't connect, 2006 gone away, 2013 lost, 2055 lost at handshake...): 2000-2999.
# (Server errors go on above them: MySQL 8's 3xxx, MariaDB's 4xxx such as 4161 unknown data type.)
CLIENT_ERRORS = range(2000, 3000)
# Between two attempts, let the queries that queued behind our lock request run.
RETRY_PAUSE = 0.5
_LOG = logging.getLogger(__name__)


class ErrorKind(str, Enum):
    LOCK = "lock"  # the lock bound ran out (or a deadlock): nothing changed, try again here
    CONNECTION = "connection"  # the server or the link went away: a retry of the step may fix it
    STATEMENT = "statement"  # the server refused the statement itself: retrying changes nothing


class LockBoundExceeded(ShiftError):
    """A DDL did not get its metadata lock within the bound; nothing changed, a retry may work."""


@dataclass(frozen=True)
class LockBound:
    """How long one attempt may wait for the lock, and how many more attempts follow."""

    timeout: int
    retries: int

    @classmethod
    def of(cls, settings) -> LockBound:
        return cls(int(settings.rename_lock_wait_timeout), int(settings.rename_retries))

    @property
    def attempts(self) -> int:
        return self.retries + 1

    @property
    def worst_case_seconds(self) -> float:
        """The longest the whole statement may keep the table's queries waiting, pauses included."""
        return self.attempts * self.timeout + self.retries * RETRY_PAUSE


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a driver error, None for anything else."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else None


def error_text(exc: BaseException) -> str:
    return str(exc.args[1]) if len(exc.args) > 1 else str(exc)


def classify(exc: BaseException) -> ErrorKind:
    """The one definition of a retryable MySQL error (see ``ErrorKind``)."""
    code = error_code(exc)
    if code in (ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK):
        return ErrorKind.LOCK
    if code is None or code in CLIENT_ERRORS or code in (ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED):
        return ErrorKind.CONNECTION
    return ErrorKind.STATEMENT


@contextlib.contextmanager
def connection(hook, bound: LockBound, log=None) -> Iterator:
    """(connection, cursor): a fresh autocommit connection whose every statement waits at most ``bound.timeout``
    for a lock; the connection for a caller that also opens transactions on it (rolled-back trials)."""
    conn = hook.get_conn()
    try:
        conn.autocommit(True)
        with conn.cursor() as cur:
            statement_log.execute(cur, "SET SESSION lock_wait_timeout = %s", (bound.timeout,), log=log or _LOG)
            yield conn, cur
    finally:
        conn.close()


@contextlib.contextmanager
def session(hook, bound: LockBound, log=None) -> Iterator:
    """A cursor on a fresh autocommit connection whose every statement waits at most ``bound.timeout``."""
    with connection(hook, bound, log) as (_, cur):
        yield cur


def execute(cur, statement: str, bound: LockBound, what: str, log=None, unchanged: str = "nothing changed") -> int:
    """Run one statement on a ``session`` cursor, retrying on the lock bound; returns the attempt that worked.

    Other errors propagate untouched: the caller knows what they mean for its step.
    """
    log = log or _LOG
    holders = ""
    for attempt in range(1, bound.attempts + 1):
        try:
            statement_log.execute(cur, statement, log=log)
            return attempt
        except Exception as exc:  # the driver's OperationalError
            if classify(exc) != ErrorKind.LOCK:
                raise
            holders = blockers(cur, bound.timeout)
            log.warning("%s attempt %d/%d: metadata lock not granted within %ss%s", what, attempt,
                        bound.attempts, bound.timeout, f" (holders? {holders})" if holders else "")
            if attempt < bound.attempts:
                time.sleep(RETRY_PAUSE)
    raise LockBoundExceeded(
        f"{what} did not get its metadata lock in {bound.attempts} attempt(s) of lock_wait_timeout="
        f"{bound.timeout}s (settings rename_lock_wait_timeout, rename_retries): a long query or open "
        f"transaction holds the table{f' ({holders})' if holders else ''}. {unchanged[:1].upper()}{unchanged[1:]}; "
        "retry when it has ended")


def run(hook, statements: Iterable[str], bound: LockBound, what: str, log=None,
        unchanged: str = "nothing changed") -> None:
    """Each statement in turn under the bound (each must be safe to run again: IF EXISTS and the like)."""
    with session(hook, bound, log) as cur:
        for statement in statements:
            execute(cur, statement, bound, what, log, unchanged)


def blockers(cur, min_seconds: int) -> str:
    """Who probably holds the table: the oldest open transactions and long queries (best effort)."""
    try:
        cur.execute(
            "SELECT p.ID, p.USER, p.COMMAND, p.TIME, t.trx_started, LEFT(p.INFO, 80) "
            "FROM information_schema.PROCESSLIST p LEFT JOIN information_schema.INNODB_TRX t "
            "ON t.trx_mysql_thread_id = p.ID WHERE p.ID <> CONNECTION_ID() AND (t.trx_id IS NOT NULL "
            "OR (p.COMMAND = 'Query' AND p.TIME >= %s)) ORDER BY p.TIME DESC LIMIT 3", (int(min_seconds),))
        rows = cur.fetchall()
    except Exception:  # describing the blocker must never hide the timeout itself
        return ""
    return ", ".join(f"thread {r[0]} user {r[1]} {r[2].lower()} for {r[3]}s"
                     + (f" in a transaction since {r[4]}" if r[4] else "") + (f": {r[5]}" if r[5] else "")
                     for r in rows)
