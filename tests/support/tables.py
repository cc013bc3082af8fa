"""Table helpers for tests: fast loading, a background writer, content checksums."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import MySQLdb

from tests.support.mariadb import MariaDBServer


def q(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def create_sample_table(server: MariaDBServer, database: str, table: str, rows: int) -> None:
    """CREATE a table with ``rows`` rows, generated server-side (about 1 s per million)."""
    server.execute(f"CREATE DATABASE IF NOT EXISTS {q(database)}")
    server.execute(
        f"CREATE TABLE {q(database)}.{q(table)} ("
        " id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
        " name VARCHAR(64) NOT NULL, amount INT NOT NULL, created DATETIME NOT NULL,"
        " KEY idx_amount (amount)) ENGINE=InnoDB"
    )
    if rows > 0:
        server.execute(
            f"INSERT INTO {q(database)}.{q(table)} (name, amount, created) "
            f"SELECT CONCAT('name-', seq), seq % 1000, '2020-01-01' + INTERVAL (seq % 100000) SECOND "
            f"FROM {q(database)}.seq_1_to_{int(rows)}"
        )


def row_count(server: MariaDBServer, database: str, table: str) -> int:
    return server.query(f"SELECT COUNT(*) FROM {q(database)}.{q(table)}")[0][0]


def content_checksum(server: MariaDBServer, database: str, table: str, columns: list[str] | None = None) -> tuple[int, int]:
    """(row count, order-independent checksum of the chosen columns' values)."""
    if columns is None:
        columns = [r[0] for r in server.query(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s "
            "ORDER BY ORDINAL_POSITION", (database, table))]
    expr = "CONCAT_WS('|', " + ", ".join(f"COALESCE({q(c)}, 'NULL')" for c in columns) + ")"
    count, checksum = server.query(
        f"SELECT COUNT(*), COALESCE(SUM(CRC32({expr})), 0) FROM {q(database)}.{q(table)}"
    )[0]
    return int(count), int(checksum)


def columns_of(server: MariaDBServer, database: str, table: str) -> list[str]:
    return [r[0] for r in server.query(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s "
        "ORDER BY ORDINAL_POSITION", (database, table))]


def triggers_on(server: MariaDBServer, database: str, table: str | None = None) -> list[str]:
    sql = "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA=%s"
    args: tuple = (database,)
    if table is not None:
        sql += " AND EVENT_OBJECT_TABLE=%s"
        args = (database, table)
    return [r[0] for r in server.query(sql, args)]


def tables_in(server: MariaDBServer, database: str) -> list[str]:
    return [r[0] for r in server.query(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s ORDER BY TABLE_NAME", (database,))]


@dataclass
class BackgroundWriter:
    """Inserts, updates and deletes against a sample table until stopped.

    ``acknowledged`` holds the ids of inserted rows whose COMMIT returned and
    that were not deleted since, so a test can prove no acknowledged write was lost.
    Connection errors (a restart, a rename's lock) are retried, never fatal.
    """

    server: MariaDBServer
    database: str
    table: str
    interval: float = 0.005
    acknowledged: set[int] = field(default_factory=set)
    deleted: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    operations: int = 0
    max_latency: float = 0.0  # the longest one statement (or failed attempt) took, in seconds
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> BackgroundWriter:
        self._thread = threading.Thread(target=self._run, name="background-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> BackgroundWriter:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        return self

    def _run(self) -> None:
        rng = random.Random(42)
        conn = None
        target = f"{q(self.database)}.{q(self.table)}"
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if conn is None:
                    conn = self.server.connect(autocommit=True)
                with conn.cursor() as cur:
                    choice = rng.random()
                    if choice < 0.6 or not self.acknowledged:
                        cur.execute(f"INSERT INTO {target} (name, amount, created) VALUES (%s, %s, NOW())",
                                    (f"writer-{self.operations}", rng.randint(0, 999)))
                        self.acknowledged.add(cur.lastrowid)
                    elif choice < 0.85:
                        cur.execute(f"UPDATE {target} SET amount = amount + 1 WHERE id = %s",
                                    (rng.randint(1, max(self.acknowledged)),))
                    else:
                        # Forget the victim first: a DELETE whose answer is lost may still have run.
                        victim = rng.choice(tuple(self.acknowledged))
                        self.acknowledged.discard(victim)
                        self.deleted.add(victim)
                        cur.execute(f"DELETE FROM {target} WHERE id = %s", (victim,))
                self.operations += 1
                self.max_latency = max(self.max_latency, time.monotonic() - started)
            except MySQLdb.Error as exc:
                self.max_latency = max(self.max_latency, time.monotonic() - started)
                self.errors.append(str(exc))
                try:
                    if conn is not None:
                        conn.close()
                except MySQLdb.Error:
                    pass
                conn = None
                time.sleep(0.05)
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def missing_rows(self, server: MariaDBServer | None = None, table: str | None = None) -> set[int]:
        """Acknowledged ids not present in the table (should be empty)."""
        server = server or self.server
        present = {r[0] for r in server.query(f"SELECT id FROM {q(self.database)}.{q(table or self.table)}")}
        return self.acknowledged - present
