"""The migration's final insert: checked in prepare (``final_insert_check``), run exactly once after the change.

Exactly once even across retries and dead workers: the insert commits in the
same transaction as a marker row keyed by the migration id and its table in a
bookkeeping table on the cluster, so a re-run sees the marker and skips. (The
table is part of the key because two shift deployments, say staging and
production, may reuse an id against one cluster.)
"""

from __future__ import annotations

import re

from shift_provider.exceptions import MigrationStepError
from shift_provider.mysql.sql import has_comment, has_statement_separator, qualified, quote_ident

BOOKKEEPING_DB = "_shift_runner"
MARKER_TABLE = "final_inserts"
_SHAPE = re.compile(r"^\s*INSERT\s+(?:IGNORE\s+)?INTO\s", re.IGNORECASE)


def check_shape(sql: str) -> str:
    """Must look like ``INSERT INTO ...`` and hold one statement with no ';'."""
    text = sql.strip()
    if ";" in text:
        raise MigrationStepError("final_insert must not contain ';' (one INSERT statement only)")
    if not _SHAPE.match(text):
        raise MigrationStepError(f"final_insert must be an INSERT INTO statement, got {text[:60]!r}")
    try:
        if has_statement_separator(text) or has_comment(text):
            raise MigrationStepError("final_insert must be a single INSERT statement without comments")
    except ValueError as exc:
        raise MigrationStepError(f"final_insert cannot be parsed: {exc}") from None
    return text


def _ensure_marker_table(cur) -> None:
    cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(BOOKKEEPING_DB)}")
    cur.execute(
        f"CREATE TABLE IF NOT EXISTS {qualified(BOOKKEEPING_DB, MARKER_TABLE)} ("
        " migration_id BIGINT UNSIGNED NOT NULL, target VARCHAR(200) NOT NULL,"
        " done_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,"
        " PRIMARY KEY (migration_id, target)) ENGINE=InnoDB"
    )


def _target(hook, target: str | None) -> str:
    """``db.table`` of the migration the hook is aimed at, unless given."""
    if target is not None:
        return target
    migration = getattr(hook, "migration", None)
    return f"{migration.database}.{migration.table}" if migration is not None else ""


def already_ran(hook, migration_id: int, target: str | None = None) -> bool:
    conn = hook.get_conn()
    try:
        with conn.cursor() as cur:
            _ensure_marker_table(cur)
            cur.execute(f"SELECT 1 FROM {qualified(BOOKKEEPING_DB, MARKER_TABLE)} WHERE migration_id = %s"
                        " AND target = %s", (migration_id, _target(hook, target)))
            return cur.fetchone() is not None
    finally:
        conn.close()


def run_once(hook, migration_id: int, sql: str | None, target: str | None = None) -> str:
    """Run the final insert unless its marker says it ran; returns what happened, for the log."""
    if not sql:
        return "no final insert"
    text = check_shape(sql)
    conn = hook.get_conn()
    try:
        with conn.cursor() as cur:
            _ensure_marker_table(cur)
        conn.autocommit(False)
        with conn.cursor() as cur:
            # The marker insert takes the row lock first: a concurrent runner waits, then fails on the key.
            cur.execute(f"INSERT IGNORE INTO {qualified(BOOKKEEPING_DB, MARKER_TABLE)} (migration_id, target)"
                        " VALUES (%s, %s)", (migration_id, _target(hook, target)))
            if cur.rowcount == 0:
                conn.rollback()
                return "final insert already ran (marker found); not run again"
            try:
                cur.execute(text)
                inserted = cur.rowcount
            except Exception as exc:
                conn.rollback()
                raise MigrationStepError(f"final_insert failed: {exc}") from None
        conn.commit()
        rows = f"{inserted} row{'s' if inserted != 1 else ''}"
        return f"final insert ran: {text}: {rows} inserted, committed with its marker"
    finally:
        conn.close()
