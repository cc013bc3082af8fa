"""Prepare's check that pt-osc's triggers can apply the application's writes to the new table.

While pt-osc copies, its triggers write every application INSERT/UPDATE into the new
table too, in the application's own transaction, naming only the columns both tables
share. When the new table refuses such a row, the application's write fails: a column
added NOT NULL with no default (error 1364), a column narrowed below the values it
holds (1406 "Data too long", 1264 "Out of range"), NULLs in a column made NOT NULL. The
copy's INSERT IGNORE meanwhile drops or mangles those values. So prepare refuses such
an ALTER before any trigger exists, with the reason.

How: the ALTER runs on an empty copy of the table in the bookkeeping database (never on
the live table) and the two column lists are compared; a narrowed column is checked
against the data with one bounded query (``max_statement_time``) that stops at the
first few rows that do not fit.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from shift_provider.contract.models import Migration
from shift_provider.engine.final_insert import BOOKKEEPING_DB
from shift_provider.mysql import bounded_ddl
from shift_provider.mysql.sql import qualified, quote_ident

DATA_CHECK_SECONDS = 60  # one bounded scan per narrowed column; a timeout is reported, not refused
SAMPLES = 3
_INT_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "bigint": 64}
_CHAR_TYPES = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext"}
_BYTE_TYPES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
_IDENT = r"(`(?:[^`]|``)+`|[\w$]+)"
# pt-osc follows a column renamed by CHANGE (its triggers and copy map old to new): not a new column.
_CHANGE = re.compile(rf"\bCHANGE\s+(?:COLUMN\s+)?(?:IF\s+EXISTS\s+)?{_IDENT}\s+{_IDENT}", re.IGNORECASE)


def renamed_columns(clause: str) -> dict[str, str]:
    """{new name: old name} (lower-cased) of the columns the ALTER renames with CHANGE."""
    def bare(name: str) -> str:
        return name[1:-1].replace("``", "`").lower() if name.startswith("`") else name.lower()
    return {bare(new): bare(old) for old, new in _CHANGE.findall(clause)}


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    column_type: str
    nullable: bool
    default: str | None  # information_schema's text; None: no default at all
    extra: str
    char_length: int | None
    precision: int | None
    scale: int | None

    @property
    def needs_no_value(self) -> bool:
        """A row that does not name this column still gets a value from the server."""
        extra = self.extra.lower()
        return (self.nullable or self.default is not None or "auto_increment" in extra
                or "generated" in extra or "virtual" in extra or "persistent" in extra or "stored" in extra)


def columns(hook, database: str, table: str) -> dict[str, Column]:
    rows = hook.get_records(
        "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, CHARACTER_MAXIMUM_LENGTH, "
        "NUMERIC_PRECISION, NUMERIC_SCALE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "ORDER BY ORDINAL_POSITION", parameters=(database, table))
    return {r[0].lower(): Column(r[0], r[1].lower(), r[2].lower(), r[3] == "YES", r[4], r[5] or "",
                                 None if r[6] is None else int(r[6]), None if r[7] is None else int(r[7]),
                                 None if r[8] is None else int(r[8])) for r in rows}


def scratch_name(migration: Migration) -> str:
    digest = hashlib.sha1(f"{migration.database}.{migration.table}".encode()).hexdigest()[:10]
    return f"_trigger_check_{migration.id}_{digest}"


@contextlib.contextmanager
def altered_copy(hook, migration: Migration, clause: str) -> Iterator[str | None]:
    """An empty copy of the table with the ALTER applied, in the bookkeeping database (its name), dropped
    afterwards; None when the ALTER cannot run on it (the dry run then says why). The live table is
    only read (CREATE TABLE ... LIKE)."""
    scratch = scratch_name(migration)
    conn = hook.get_conn()
    try:
        conn.autocommit(True)
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(BOOKKEEPING_DB)}")
            cur.execute(f"DROP TABLE IF EXISTS {qualified(BOOKKEEPING_DB, scratch)}")
            try:
                cur.execute(f"CREATE TABLE {qualified(BOOKKEEPING_DB, scratch)} "
                            f"LIKE {qualified(migration.database, migration.table)}")
                cur.execute(f"ALTER TABLE {qualified(BOOKKEEPING_DB, scratch)} {clause}")
            except Exception as exc:
                if bounded_ddl.classify(exc) == bounded_ddl.ErrorKind.CONNECTION:
                    raise
                cur.execute(f"DROP TABLE IF EXISTS {qualified(BOOKKEEPING_DB, scratch)}")
                yield None
                return
            try:
                yield scratch
            finally:
                cur.execute(f"DROP TABLE IF EXISTS {qualified(BOOKKEEPING_DB, scratch)}")
    finally:
        conn.close()


def altered_columns(hook, migration: Migration, clause: str) -> dict[str, Column] | None:
    """The columns the ALTER gives the table, from an empty copy; None when the ALTER cannot run on one."""
    with altered_copy(hook, migration, clause) as scratch:
        return None if scratch is None else columns(hook, BOOKKEEPING_DB, scratch)


def _int_range(column: Column) -> tuple[int, int] | None:
    bits = _INT_BITS.get(column.data_type)
    if bits is None:
        return None
    if "unsigned" in column.column_type:
        return 0, 2 ** bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def misfit_condition(old: Column, new: Column) -> str | None:
    """A WHERE condition on the original table true for the values the new column cannot hold as they are."""
    col = quote_ident(old.name)
    conditions = []
    if old.nullable and not new.nullable:
        conditions.append(f"{col} IS NULL")
    if new.data_type in _CHAR_TYPES | _BYTE_TYPES and new.char_length is not None \
            and (old.char_length is None or new.char_length < old.char_length):
        measure = "LENGTH" if new.data_type in _BYTE_TYPES else "CHAR_LENGTH"
        conditions.append(f"{measure}({col}) > {int(new.char_length)}")
    new_range, old_range = _int_range(new), _int_range(old)
    if new_range is not None and (old_range is None or new_range[0] > old_range[0] or new_range[1] < old_range[1]):
        conditions.append(f"({col} < {new_range[0]} OR {col} > {new_range[1]})")
    if new.data_type == "decimal" and new.precision is not None and new.scale is not None \
            and (old.data_type != "decimal" or (new.precision - new.scale) < ((old.precision or 0) - (old.scale or 0))):
        conditions.append(f"ABS({col}) >= POW(10, {int(new.precision - new.scale)})")
    return " OR ".join(conditions) or None


QUERY_TIMEOUT_ERRORS = (1969, 3024)  # ER_STATEMENT_TIMEOUT (MariaDB), ER_QUERY_TIMEOUT (MySQL)
ER_PARSE_ERROR = 1064


def bounded_select(hook, select_rest: str, seconds: int) -> list[tuple]:
    """``SELECT <select_rest>`` stopped by the server after ``seconds`` (raises a 1969/3024 error then).

    MariaDB: ``SET STATEMENT max_statement_time``; MySQL, which does not parse that: the
    ``MAX_EXECUTION_TIME`` optimizer hint.
    """
    try:
        return hook.get_records(f"SET STATEMENT max_statement_time = {int(seconds)} FOR SELECT {select_rest}")
    except Exception as exc:
        if bounded_ddl.error_code(exc) != ER_PARSE_ERROR:
            raise
    return hook.get_records(f"SELECT /*+ MAX_EXECUTION_TIME({int(seconds) * 1000}) */ {select_rest}")


def misfits(hook, database: str, table: str, column: str, condition: str) -> list | None:
    """Up to SAMPLES values of ``column`` matching ``condition``; None when the scan ran out of time."""
    try:
        rows = bounded_select(hook, f"{quote_ident(column)} FROM {qualified(database, table)} WHERE {condition} "
                                    f"LIMIT {SAMPLES}", DATA_CHECK_SECONDS)
    except Exception as exc:
        if bounded_ddl.error_code(exc) in QUERY_TIMEOUT_ERRORS:
            return None
        raise
    return [r[0] for r in rows]


def problems(hook, migration: Migration, clause: str, log) -> list[str]:
    """Why pt-osc's triggers could not apply the application's writes to the new table (empty: they can)."""
    after = altered_columns(hook, migration, clause)
    if after is None:
        return []
    before = columns(hook, migration.database, migration.table)
    for new_name, old_name in renamed_columns(clause).items():
        if old_name in before and new_name not in before:
            before[new_name] = before[old_name]
    found = []
    for name, new in after.items():
        if name not in before and not new.needs_no_value:
            found.append(f"column `{new.name}` is added NOT NULL without a DEFAULT: pt-osc's triggers copy each "
                         "application write into the new table without it, the server refuses those rows (error "
                         "1364) and every INSERT on the table fails while the copy runs; give it a DEFAULT or "
                         "allow NULL")
    for name, new in after.items():
        old = before.get(name)
        condition = None if old is None else misfit_condition(old, new)
        if condition is None:
            continue
        values = misfits(hook, migration.database, migration.table, old.name, condition)
        if values is None:
            log.warning("could not check within %ss whether the data of `%s` fits %s; pt-osc will find out",
                        DATA_CHECK_SECONDS, old.name, new.column_type)
        elif values:
            shown = ", ".join("NULL" if v is None else repr(v if not isinstance(v, bytes) else v[:40])[:60]
                              for v in values)
            found.append(f"column `{old.name}` changes from {old.column_type}{'' if old.nullable else ' NOT NULL'} "
                         f"to {new.column_type}{'' if new.nullable else ' NOT NULL'}, which existing rows do not "
                         f"fit (e.g. {shown}): the copy would change or drop them and pt-osc's triggers would "
                         "make the application's writes of such values fail")
    return found
