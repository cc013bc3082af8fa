"""Prove the copy before the swap: a chunked content checksum of the shadow against the original.

pt-osc copies with ``INSERT IGNORE`` and keeps the copy in sync with triggers; neither
tells whether the shadow table really holds what the original holds (an ignored
duplicate under a new unique key, a trigger that misfired, a conversion that
truncated). So, before the migration may wait for its rename, both tables are
compared chunk by chunk over the original's primary key:

- each chunk is read from both tables inside one ``START TRANSACTION WITH CONSISTENT
  SNAPSHOT``: pt-osc's triggers write both tables in the application's own
  transaction, so a snapshot sees them agree; no lock is taken;
- columns are compared on what the ALTER keeps (renamed columns under their new
  name, added columns not at all, dropped ones skipped); where a column's type
  changed, both sides are cast to the shadow's type, so the original's value
  "converted to the new type" is what is compared;
- a chunk that differs is copied again once from the original, in one transaction,
  as pt-osc copies (``INSERT ... SELECT ... LOCK IN SHARE MODE``, but without
  IGNORE, so a duplicate under a new unique key is an error, not a lost row), then
  compared again; if it still differs the copy fails with the first differing keys;
- the chunk size follows a target time per chunk, like pt-osc's ``--chunk-time``,
  and the checksum waits while ``Threads_running`` is above the copy's own
  ``--max-load`` limit or a replica pt-osc checks lags past ``--max-lag``
  (``replica_lag``). It only reads, so it adds no replication lag itself; the few
  repaired rows replicate like the copy's own. A pause, cancel or the stop file is
  honoured between chunks (the caller's ``between_chunks``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from shift_provider.exceptions import MigrationStepError
from shift_provider.mysql.sql import qualified, quote_ident

TARGET_CHUNK_SECONDS = 0.5
PAUSE_FRACTION = 0.6  # after each chunk, sleep this fraction of the time it took (see Checksummer._run)
FIRST_CHUNK_ROWS = 2000
MIN_CHUNK_ROWS = 200
MAX_CHUNK_ROWS = 200_000
THROTTLE_SLEEP_SECONDS = 1.0
MAX_DIFFERING_KEYS_NAMED = 5

_INTEGER_TYPES = ("tinyint", "smallint", "mediumint", "int", "bigint", "year", "bit")
_TEXT_TYPES = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json")
_BINARY_TYPES = ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob")


class ChecksumMismatch(MigrationStepError):
    """The shadow table differs from the original and copying the chunk again did not fix it."""

    result: Result | None = None


class ChecksumStopped(Exception):
    """The checksum was asked to stop (pause, cancel, stop file, kill) between two chunks."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # information_schema DATA_TYPE, lower case
    column_type: str  # COLUMN_TYPE, e.g. "varchar(32)", "int(10) unsigned"
    charset: str | None
    precision: int | None
    scale: int | None
    max_length: int | None
    datetime_precision: int | None


@dataclass(frozen=True)
class Plan:
    """What to compare, decided once from both tables' definitions."""

    database: str
    table: str
    shadow: str
    key: tuple[str, ...]  # the original's primary key columns (same names in the shadow)
    original_columns: tuple[str, ...]  # compared columns, as named in the original
    shadow_columns: tuple[str, ...]  # the same columns, as named in the shadow
    original_exprs: tuple[str, ...]
    shadow_exprs: tuple[str, ...]

    @property
    def chunked(self) -> bool:
        return bool(self.key)


@dataclass
class Result:
    """What the checksum did, for XCom, the state file and the logs."""

    chunks: int = 0
    rows: int = 0  # rows of the original checked
    chunks_repaired: int = 0
    rows_repaired: int = 0  # rows of the shadow copied again
    seconds: float = 0.0
    throttled_seconds: float = 0.0
    chunk_rows_last: int = 0
    repaired_ranges: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["throttled_seconds"] = round(self.throttled_seconds, 3)
        return data


def _columns(hook, database: str, table: str) -> dict[str, Column]:
    rows = hook.get_records(
        "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, NUMERIC_PRECISION, NUMERIC_SCALE,"
        " CHARACTER_MAXIMUM_LENGTH, DATETIME_PRECISION FROM information_schema.COLUMNS"
        " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        parameters=(database, table))
    return {r[0].lower(): Column(r[0], str(r[1]).lower(), str(r[2]).lower(), r[3], r[4], r[5], r[6], r[7])
            for r in rows}


def _primary_key(hook, database: str, table: str) -> tuple[str, ...]:
    rows = hook.get_records(
        "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
        " AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX", parameters=(database, table))
    return tuple(r[0] for r in rows)


def cast_target(column: Column) -> str:
    """The CAST type that reads a value as a column of this type holds it."""
    t = column.data_type
    if t in _INTEGER_TYPES:
        return "UNSIGNED" if "unsigned" in column.column_type or t == "bit" else "SIGNED"
    if t == "decimal":
        return f"DECIMAL({column.precision or 10},{column.scale or 0})"
    if t in ("float", "double"):
        return "DOUBLE"
    if t == "date":
        return "DATE"
    if t in ("datetime", "timestamp"):
        return f"DATETIME({column.datetime_precision or 0})"
    if t == "time":
        return f"TIME({column.datetime_precision or 0})"
    if t in ("char", "varchar"):
        return f"CHAR({column.max_length}) CHARACTER SET {column.charset or 'utf8mb4'}"
    if t in _TEXT_TYPES:
        return f"CHAR CHARACTER SET {column.charset or 'utf8mb4'}"
    if t in ("binary", "varbinary"):
        return f"BINARY({column.max_length})"
    return "BINARY"


def plan(hook, database: str, table: str, shadow: str,
         renamed_columns: tuple[tuple[str, str], ...] = ()) -> Plan:
    """Decide the key and the compared columns from both tables as they are now."""
    original = _columns(hook, database, table)
    new = _columns(hook, database, shadow)
    if not original or not new:
        raise MigrationStepError(f"cannot checksum: `{database}`.`{table}` or its shadow `{shadow}` is missing")
    renames = {old.lower(): new_name.lower() for old, new_name in renamed_columns}
    pairs = []
    for name, column in original.items():
        target = new.get(renames.get(name, name))
        if target is not None:
            pairs.append((column, target))
    key = _primary_key(hook, database, table)
    if any(k.lower() not in new or k.lower() in renames for k in key):
        key = ()  # the shadow lacks the original's key under the same name: one whole-table snapshot
    o_exprs, s_exprs = [], []
    for column, target in pairs:
        if column.column_type == target.column_type and column.charset == target.charset:
            o_exprs.append(quote_ident(column.name))
            s_exprs.append(quote_ident(target.name))
        else:
            cast = cast_target(target)
            o_exprs.append(f"CAST({quote_ident(column.name)} AS {cast})")
            s_exprs.append(f"CAST({quote_ident(target.name)} AS {cast})")
    return Plan(database, table, shadow, key, tuple(c.name for c, _ in pairs), tuple(t.name for _, t in pairs),
                tuple(o_exprs), tuple(s_exprs))


def _row_digest(exprs: tuple[str, ...]) -> str:
    """One row's CRC32 over every value as bytes, NULLs marked (CONCAT_WS skips them).

    CRC32, as pt-table-checksum uses by default: an MD5 costs about six times as much per
    row, and the checksum must stay well under the copy's own cost.
    """
    values = [f"CAST({e} AS BINARY)" for e in exprs]
    nulls = "CONCAT(" + ", ".join(f"ISNULL({e})" for e in exprs) + ")"
    return f"CRC32(CONCAT_WS('#', {', '.join(values)}, {nulls}))"


def _checksum_sql(table_sql: str, exprs: tuple[str, ...], where: str) -> str:
    """A chunk's digest: its row count, and the XOR and the SUM of its rows' CRC32s.

    The two aggregates of the same per-row hashes fail in different ways (CRC32 is linear
    over XOR, so two rows that swap values cancel in an XOR; they do not in a sum), so
    together they are far harder to fool than one. Each row's hash is computed once, in a
    derived table the session materializes (``derived_merge=off``, set by the checksummer):
    merged, the server would compute it once per aggregate, about 40 % more work.
    """
    return (f"SELECT COUNT(*), COALESCE(BIT_XOR(h), 0), COALESCE(SUM(h), 0)"
            f" FROM (SELECT {_row_digest(exprs)} AS h FROM {table_sql} WHERE {where}) AS rows_digest")


def _range(key: tuple[str, ...], after: tuple | None, upper: tuple | None) -> tuple[str, list[Any]]:
    """WHERE text and parameters for after < key <= upper (either end open), lexicographic.

    Chunks (None, u1], (u1, u2], ... (un, None) cover every key, so a row the shadow has
    and the original lacks falls in some chunk too.
    """
    clauses, params = [], []
    for bound, op, inclusive in ((after, ">", False), (upper, "<", True)):
        if bound is None:
            continue
        # (k1, k2) > (a, b)  ==  k1 > a OR (k1 = a AND k2 > b)
        parts, ps = [], []
        for i in range(len(key)):
            equal = [f"{quote_ident(k)} = %s" for k in key[:i]]
            last_op = op + ("=" if inclusive and i == len(key) - 1 else "")
            parts.append("(" + " AND ".join([*equal, f"{quote_ident(key[i])} {last_op} %s"]) + ")")
            ps += [*bound[:i], bound[i]]
        clauses.append("(" + " OR ".join(parts) + ")")
        params += ps
    return (" AND ".join(clauses) or "1 = 1"), params


class Checksummer:
    """Runs the comparison; ``progress(percent, eta_seconds)`` and ``note(text)`` report it."""

    def __init__(self, hook, the_plan: Plan, *, max_threads_running: int, estimated_rows: int,
                 progress: Callable[[int, int | None], None], note: Callable[[str], None],
                 target_chunk_seconds: float = TARGET_CHUNK_SECONDS,
                 lag_reason: Callable[[], str | None] = lambda: None,
                 between_chunks: Callable[[], None] = lambda: None) -> None:
        self.hook = hook
        self.plan = the_plan
        self.max_threads_running = max_threads_running
        self.estimated_rows = max(estimated_rows, 1)
        self.progress = progress
        self.note = note
        self.target = target_chunk_seconds
        self.lag_reason = lag_reason
        self.between_chunks = between_chunks  # may raise to stop the checksum (pause, cancel, stop file)
        self.result = Result()
        self._original = qualified(the_plan.database, the_plan.table)
        self._shadow = qualified(the_plan.database, the_plan.shadow)

    # -- the comparison -------------------------------------------------------------------

    def run(self) -> Result:
        try:
            return self._run()
        except ChecksumMismatch as exc:
            exc.result = self.result
            raise

    def _run(self) -> Result:
        started = time.monotonic()
        conn = self.hook.get_conn()
        try:
            conn.autocommit(False)
            cursor = conn.cursor()
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("SET SESSION optimizer_switch = 'derived_merge=off'")  # see _checksum_sql
            after: tuple | None = None
            rows_wanted = FIRST_CHUNK_ROWS
            while True:
                self.throttle(cursor)
                upper = self.upper_bound(cursor, after, rows_wanted) if self.plan.chunked else None
                chunk_started = time.monotonic()
                rows = self.check_chunk(cursor, after, upper)
                elapsed = time.monotonic() - chunk_started
                self.result.chunks += 1
                self.result.rows += rows
                self.result.chunk_rows_last = rows_wanted
                self.report(started)
                if upper is None:
                    break
                after = upper
                rows_wanted = self.next_chunk_rows(rows_wanted, elapsed)
                # Leave the server idle for a part of each chunk's time (the application's queries
                # get the CPU the chunk took), like pt-osc's --sleep between chunks. 0.6 keeps the
                # whole checksum near 0.45x the copy's time while a writer's p99 stays near idle
                # (`make bench`: checksum/copy, write_p99_checksum/idle).
                time.sleep(elapsed * PAUSE_FRACTION)
        finally:
            conn.close()
        self.result.seconds = time.monotonic() - started
        self.progress(100, 0)
        return self.result

    def upper_bound(self, cursor, after: tuple | None, rows_wanted: int) -> tuple | None:
        """The key of the chunk's last row, read from the original; None when the rest fits in one chunk."""
        key_sql = ", ".join(quote_ident(k) for k in self.plan.key)
        where, params = _range(self.plan.key, after, None)
        cursor.execute(f"SELECT {key_sql} FROM {self._original} FORCE INDEX (PRIMARY) WHERE {where}"
                       f" ORDER BY {key_sql} LIMIT 1 OFFSET {int(rows_wanted) - 1}", params)
        row = cursor.fetchone()
        cursor.execute("COMMIT")
        return tuple(row) if row else None

    def check_chunk(self, cursor, after: tuple | None, upper: tuple | None) -> int:
        """Compare one chunk; copy it again once if it differs. The original's row count."""
        where, params = _range(self.plan.key, after, upper) if self.plan.chunked else ("1 = 1", [])
        original, shadow = self.read_chunk(cursor, where, params)
        if original == shadow:
            return original[0]
        self.repair(cursor, where, params, after, upper)
        original, shadow = self.read_chunk(cursor, where, params)
        if original != shadow:
            raise ChecksumMismatch(
                f"the shadow table `{self.plan.shadow}` differs from `{self.plan.table}` in the chunk "
                f"{self.describe(after, upper)} even after copying it again ({original[0]} rows in the original, "
                f"{shadow[0]} in the shadow); first differing keys: {self.differing_keys(cursor, where, params)}; "
                "nothing is swapped")
        return original[0]

    def read_chunk(self, cursor, where: str, params: list[Any]) -> tuple[tuple, tuple]:
        cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        try:
            cursor.execute(_checksum_sql(self._original, self.plan.original_exprs, where), params)
            original = tuple(int(v) for v in cursor.fetchone())
            cursor.execute(_checksum_sql(self._shadow, self.plan.shadow_exprs, where), params)
            shadow = tuple(int(v) for v in cursor.fetchone())
        finally:
            cursor.execute("COMMIT")
        return original, shadow

    def repair(self, cursor, where: str, params: list[Any], after: tuple | None, upper: tuple | None) -> None:
        """Copy the chunk again from the original, as pt-osc does, in one transaction."""
        shadow_cols = ", ".join(quote_ident(c) for c in self.plan.shadow_columns)
        original_cols = ", ".join(quote_ident(c) for c in self.plan.original_columns)
        cursor.execute("START TRANSACTION")
        try:
            cursor.execute(f"DELETE FROM {self._shadow} WHERE {where}", params)
            cursor.execute(f"INSERT INTO {self._shadow} ({shadow_cols}) SELECT {original_cols} FROM {self._original}"
                           f" WHERE {where} LOCK IN SHARE MODE", params)
            copied = cursor.rowcount
            cursor.execute("COMMIT")
        except Exception as exc:
            cursor.execute("ROLLBACK")
            raise ChecksumMismatch(
                f"the shadow table `{self.plan.shadow}` differs from `{self.plan.table}` in the chunk "
                f"{self.describe(after, upper)} and copying it again failed: {exc}; first differing keys: "
                f"{self.differing_keys(cursor, where, params)}; nothing is swapped") from exc
        self.result.chunks_repaired += 1
        self.result.rows_repaired += max(copied, 0)
        self.result.repaired_ranges.append(self.describe(after, upper))
        self.note(f"checksum: chunk {self.describe(after, upper)} differed; copied again from the original "
                  f"({copied} rows)")

    def differing_keys(self, cursor, where: str, params: list[Any]) -> list[Any]:
        """Keys whose rows differ between the tables (a few, for the message)."""
        if not self.plan.chunked:
            return []
        key_sql = ", ".join(quote_ident(k) for k in self.plan.key)
        digests = {}
        for name, table_sql, exprs in (("original", self._original, self.plan.original_exprs),
                                       ("shadow", self._shadow, self.plan.shadow_exprs)):
            cursor.execute(f"SELECT {key_sql}, {_row_digest(exprs)} FROM {table_sql} WHERE {where}", params)
            digests[name] = {tuple(r[:-1]): r[-1] for r in cursor.fetchall()}
        cursor.execute("COMMIT")
        keys = set(digests["original"]) | set(digests["shadow"])
        differing = sorted((k for k in keys if digests["original"].get(k) != digests["shadow"].get(k)), key=str)
        return [k[0] if len(k) == 1 else k for k in differing[:MAX_DIFFERING_KEYS_NAMED]]

    # -- pacing ---------------------------------------------------------------------------

    def next_chunk_rows(self, rows: int, elapsed: float) -> int:
        """Aim each chunk at the target time, changing by at most 2x a step (pt-osc's --chunk-time)."""
        if elapsed <= 0:
            return min(rows * 2, MAX_CHUNK_ROWS)
        wanted = rows * self.target / elapsed
        return int(max(MIN_CHUNK_ROWS, min(MAX_CHUNK_ROWS, rows * 2, max(rows / 2, wanted))))

    def throttle(self, cursor) -> None:
        """Wait while the server is as busy as the copy's --max-load allows or a replica lags
        past its --max-lag (``lag_reason``); say so once per reason. ``between_chunks`` runs
        before every chunk and on every wait, so a pause, cancel or stop file ends a long wait."""
        said = None
        while True:
            self.between_chunks()
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Threads_running'")
            running = int(cursor.fetchone()[1])
            reason = (f"Threads_running={running} (limit {self.max_threads_running})"
                      if running > self.max_threads_running else self.lag_reason())
            if reason is None:
                if said is not None:
                    self.note("checksum: going on")
                return
            if reason != said:
                self.note(f"checksum: pausing because {reason}")
                said = reason
            time.sleep(THROTTLE_SLEEP_SECONDS)
            self.result.throttled_seconds += THROTTLE_SLEEP_SECONDS

    def report(self, started: float) -> None:
        done = min(self.result.rows / self.estimated_rows, 0.99)
        elapsed = time.monotonic() - started
        eta = int(elapsed * (1 - done) / done) if done > 0 else None
        self.progress(int(done * 100), eta)

    def describe(self, after: tuple | None, upper: tuple | None) -> str:
        if not self.plan.chunked:
            return "(whole table)"
        def show(v: tuple) -> str:
            return str(v[0]) if len(v) == 1 else str(v)
        return f"({'-inf' if after is None else show(after)} .. {'+inf' if upper is None else show(upper)}]"


def compare(hook, database: str, table: str, shadow: str, *, renamed_columns: tuple[tuple[str, str], ...],
            max_threads_running: int, chunk_seconds: float, progress: Callable[[int, int | None], None],
            note: Callable[[str], None], lag_reason: Callable[[], str | None] = lambda: None,
            between_chunks: Callable[[], None] = lambda: None) -> Result:
    """Plan and run the whole comparison of ``shadow`` against ``table``, saying what is compared.

    ``lag_reason`` says why to wait for the replicas (``replica_lag.LagWatch.waiting_reason``);
    ``between_chunks`` runs before each chunk and may raise to stop the checksum.
    """
    the_plan = plan(hook, database, table, shadow, renamed_columns)
    row = hook.get_first("SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND "
                         "TABLE_NAME = %s", parameters=(database, table))
    estimated = int(row[0] or 0) if row else 0
    over = f"({', '.join(the_plan.key)})" if the_plan.chunked else "the whole table in one snapshot"
    note(f"checksum: comparing `{shadow}` with `{table}` on {len(the_plan.original_columns)} column(s), "
         f"chunked over {over} (about {estimated} rows, an estimate)")
    return Checksummer(hook, the_plan, max_threads_running=max_threads_running, estimated_rows=estimated,
                       progress=progress, note=note, target_chunk_seconds=chunk_seconds,
                       lag_reason=lag_reason, between_chunks=between_chunks).run()
