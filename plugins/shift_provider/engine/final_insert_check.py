"""Prepare's check of the final insert: no data changes on any engine, against the table as the ALTER leaves it.

Two things went wrong with "run it in a transaction and roll it back": on MyISAM or
Aria the rollback undoes nothing, so prepare left a row (and the real insert after the
swap then added a second one, or failed on a UNIQUE key with the table already
swapped); and an insert naming a column the ALTER adds always failed, being tried
on the table before the ALTER.

So the check is, in order:

1. when the insert targets the migration's own table and the DDL is an ALTER, an
   empty copy of that table with the ALTER applied is made in the runner's scratch
   database (``_shift_runner``; a temporary table where it can be: no binlog event,
   gone with the session), and the insert is aimed at it instead;
2. ``PREPARE`` of the statement: the server resolves its tables and columns and
   checks its syntax, and executes nothing, whatever the engine;
3. a trial insert, rolled back, only when the target is transactional and has no
   triggers (a trigger may write to a table a rollback does not reach); otherwise
   the log says plainly that data errors (a duplicate key) show only when it runs;
4. for the altered copy, which is empty: when the insert also fits the live table as
   it is, a rolled-back trial there (same conditions) refuses a duplicate key.
"""

from __future__ import annotations

import hashlib
import re

from shift_provider.contract.models import Migration
from shift_provider.engine.final_insert import BOOKKEEPING_DB, check_shape
from shift_provider.exceptions import MigrationStepError
from shift_provider.mysql import bounded_ddl
from shift_provider.mysql.bounded_ddl import LockBound
from shift_provider.mysql.sql import qualified, quote_ident, tokenize

_PREPARED = "_shift_final_insert_check"
CLIENT_ERRORS = 2000  # MySQL client error codes (connection lost, server gone) start here
_ENGINE = re.compile(r"\) ENGINE=(\w+)")
ER_DUP_ENTRY = 1062


def target(sql: str) -> tuple[str | None, str, int, int]:
    """(database or None, table, start, end) of the table named after ``INSERT [IGNORE] INTO``; start/end
    are the name's character offsets in ``sql``, so it can be aimed at another table."""
    offset, names, start, end, seen_into, expect_name = 0, [], -1, -1, False, False
    for kind, text in tokenize(sql):
        width = len(text.replace("`", "``")) + 2 if kind == "qident" else len(text)
        if seen_into and kind != "ws":
            if kind in ("word", "qident") and (not names or expect_name):
                start = offset if start < 0 else start
                names.append(text)
                end, expect_name = offset + width, False
            elif kind == "punct" and text == "." and names and len(names) < 2 and not expect_name:
                expect_name = True
            else:
                break
        elif kind == "word" and text.upper() == "INTO" and not seen_into:
            seen_into, expect_name = True, True
        offset += width
    if not names or expect_name:
        raise MigrationStepError("final_insert does not name the table it inserts into")
    return (None, names[0], start, end) if len(names) == 1 else (names[0], names[1], start, end)


def scratch_table(migration: Migration) -> str:
    """A name of this migration's own in the scratch database (ids may repeat across deployments)."""
    digest = hashlib.sha1(f"{migration.database}.{migration.table}".encode()).hexdigest()[:10]
    return f"_final_insert_probe_{migration.id}_{digest}"


def _transactional_without_triggers(cur, database: str, table: str, temporary: bool = False) -> tuple[bool, str]:
    """(may a rolled-back trial run?, the engine or why not). A temporary table (no triggers, and not in
    information_schema.TABLES before MariaDB 11.2) is read from SHOW CREATE TABLE."""
    if temporary:
        cur.execute(f"SHOW CREATE TABLE {qualified(database, table)}")
        match = _ENGINE.search(cur.fetchone()[1])
        engine = match[1] if match else ""
        cur.execute("SELECT TRANSACTIONS FROM information_schema.ENGINES WHERE ENGINE = %s", (engine,))
        row = cur.fetchone()
        if not row or row[0] != "YES":
            return False, f"the copy is {engine or 'of an unknown engine'} (non-transactional)"
        return True, engine
    cur.execute("SELECT t.TABLE_TYPE, t.ENGINE, e.TRANSACTIONS FROM information_schema.TABLES t "
                "LEFT JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE "
                "WHERE t.TABLE_SCHEMA = %s AND t.TABLE_NAME = %s", (database, table))
    row = cur.fetchone()
    if row is None or row[0] != "BASE TABLE":
        return False, f"`{database}`.`{table}` is not a base table (a view?)"
    if row[2] != "YES":
        return False, f"`{database}`.`{table}` is {row[1]} (non-transactional)"
    cur.execute("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = %s "
                "AND EVENT_OBJECT_TABLE = %s", (database, table))
    if cur.fetchone()[0]:
        return False, f"`{database}`.`{table}` has triggers (they may write where a rollback does not reach)"
    return True, str(row[1])


def check(hook, migration: Migration, sql: str, alter_clause: str | None, bound: LockBound) -> str:
    """Check the final insert without changing any data; a one-line account for the log.

    ``alter_clause``: the migration's ALTER, applied to an empty copy when the insert
    targets the migration's table. ``hook`` is on the migration's database (where an
    unqualified name in the insert resolves).
    """
    text = check_shape(sql)
    try:
        database, table, start, end = target(text)
    except ValueError as exc:
        raise MigrationStepError(f"final_insert cannot be parsed: {exc}") from None
    database = database or migration.database
    own_table = alter_clause is not None and (database, table) == (migration.database, migration.table)
    scratch = scratch_table(migration)
    with bounded_ddl.connection(hook, bound) as (conn, cur):
        if not own_table:
            return _check_against(conn, cur, text, database, table, f"`{database}`.`{table}`")
        temporary = _create_copy(cur, migration, scratch)
        try:
            _alter_copy(cur, migration, scratch, alter_clause)
            done = _check_against(conn, cur, text[:start] + qualified(BOOKKEEPING_DB, scratch) + text[end:],
                                  BOOKKEEPING_DB, scratch, f"an empty copy of `{migration.database}`."
                                  f"`{migration.table}` with the ALTER applied (`{BOOKKEEPING_DB}`.`{scratch}`)",
                                  temporary=temporary)
            return done + _duplicates_now(conn, cur, text, database, table)
        finally:
            kind = "TEMPORARY TABLE" if temporary else "TABLE"
            cur.execute(f"DROP {kind} IF EXISTS {qualified(BOOKKEEPING_DB, scratch)}")


def _prepare(cur, text: str) -> None:
    cur.execute(f"PREPARE {_PREPARED} FROM %s", (text,))
    cur.execute(f"DEALLOCATE PREPARE {_PREPARED}")


def _check_against(conn, cur, text: str, database: str, table: str, where: str, temporary: bool = False) -> str:
    """PREPARE, then a rolled-back trial where a rollback undoes it; what was done, in words."""
    try:
        _prepare(cur, text)
    except Exception as exc:
        raise MigrationStepError(f"final_insert fails on the database: {exc} (checked with PREPARE against "
                                 f"{where})") from None
    trial, why = _transactional_without_triggers(cur, database, table, temporary)
    if not trial:
        return (f"final insert checked with PREPARE against {where} (tables, columns, syntax); no trial insert, "
                f"because {why}: a rollback could not undo it. A data error (e.g. a duplicate key) would show "
                "only when it runs, once, after the change")
    try:
        _trial(conn, cur, text)
    except Exception as exc:
        raise MigrationStepError(f"final_insert fails on the database: {exc} (a trial against {where}, rolled "
                                 "back)") from None
    return f"final insert checked with PREPARE and a trial insert rolled back ({why}) against {where}"


def _duplicates_now(conn, cur, text: str, database: str, table: str) -> str:
    """An empty copy cannot see a duplicate key against today's rows: when the insert also fits the live table
    as it is (and a rollback undoes it there), a trial on it refuses a duplicate key, and only that."""
    try:
        _prepare(cur, text)
    except Exception:  # it needs the ALTER (e.g. names the new column): the altered copy was the check
        return ""
    trial, _ = _transactional_without_triggers(cur, database, table)
    if not trial:
        return ""
    try:
        _trial(conn, cur, text)
    except Exception as exc:
        if exc.args and exc.args[0] == ER_DUP_ENTRY:
            raise MigrationStepError(f"final_insert fails on the database: {exc} (a trial against "
                                     f"`{database}`.`{table}` as it is now, rolled back)") from None
        return ""
    return "; a trial on the live table (rolled back) found no duplicate key"


def _create_copy(cur, migration: Migration, scratch: str) -> bool:
    """``CREATE TEMPORARY TABLE _shift_runner.scratch LIKE t``; True when it is a temporary table.

    Temporary: it dies with the session, and with row-based binlogs neither it nor its
    ALTER reaches the binlog or the replicas. A partitioned table cannot be copied as a
    temporary one, so it gets a plain table (dropped again).
    """
    cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(BOOKKEEPING_DB)}")
    like = f"{qualified(BOOKKEEPING_DB, scratch)} LIKE {qualified(migration.database, migration.table)}"
    try:
        cur.execute(f"CREATE TEMPORARY TABLE {like}")
        return True
    except Exception as exc:
        if not exc.args or not isinstance(exc.args[0], int) or exc.args[0] >= CLIENT_ERRORS:
            raise  # the connection, not the table
    cur.execute(f"DROP TABLE IF EXISTS {qualified(BOOKKEEPING_DB, scratch)}")  # one a killed attempt left
    cur.execute(f"CREATE TABLE {like}")
    return False


def _alter_copy(cur, migration: Migration, scratch: str, clause: str) -> None:
    """The migration's ALTER on the copy, with the scratch database as the default one meanwhile: a table
    the clause names without a database resolves there, never among the live tables."""
    cur.execute(f"USE {quote_ident(BOOKKEEPING_DB)}")
    cur.execute("SET SESSION foreign_key_checks = 0")  # a REFERENCES clause needs no parent on an empty copy
    try:
        cur.execute(f"ALTER TABLE {quote_ident(scratch)} {clause}")
    except Exception as exc:
        raise MigrationStepError("final_insert cannot be checked against the table as the ALTER leaves it: the "
                                 f"ALTER fails on an empty copy of `{migration.table}`: {exc}") from None
    finally:
        cur.execute("SET SESSION foreign_key_checks = 1")
        cur.execute(f"USE {quote_ident(migration.database)}")


def _trial(conn, cur, text: str) -> None:
    """The insert inside a transaction that is rolled back (transactional tables only)."""
    conn.autocommit(False)
    try:
        cur.execute(text)
    finally:
        conn.rollback()
        conn.autocommit(True)
