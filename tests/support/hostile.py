"""Tools for hostile-input tests: a broken upstream, raw staging, and proof that no SQL ran.

* ``RootServer``: the harness's own view of a MariaDB server, as root over the unix
  socket, so the general log tells the harness's statements from the runner's
  (the runner connects as ``TEST_USER`` over TCP).
* ``stage_raw``: writes a migration row straight into the reference API's SQLite
  store, for payloads the API refuses at create time: the runner then sees it in
  ``staged`` exactly as a broken upstream would serve it.
* ``BrokenUpstream``: a real HTTP server in front of the reference API that passes
  every request through, except that it rewrites chosen migrations in the
  ``staged`` answer (and can add entries no API would make): the way to serve
  field types the API's SQLite schema cannot hold (an id that is text, a list
  for a port...).
* ``snapshot``/``RunnerTrace``: what a database looks like, and every statement
  the runner sent about it (general log) or that was written for it (binlog).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import MySQLdb
import requests

from tests.support.mariadb import TEST_USER, MariaDBServer, SqlClient
from tests.support.tables import columns_of, content_checksum, q, tables_in, triggers_on


class RootServer(SqlClient):
    """``query``/``execute`` as root over the unix socket (the table helpers accept it as a server)."""

    def __init__(self, server: MariaDBServer) -> None:
        self.server = server

    def connect(self, database: str | None = None) -> MySQLdb.Connection:
        conn = MySQLdb.connect(unix_socket=str(self.server.socket_path), user="root", charset="utf8mb4",
                               db=database or "", connect_timeout=5)
        conn.autocommit(True)
        return conn

    def master_position(self) -> tuple[str, int]:
        file, position = self.query("SHOW MASTER STATUS")[0][:2]
        return file, int(position)


def snapshot(root: RootServer, database: str) -> dict[str, Any]:
    """Tables, their definitions, columns, triggers and content checksums of one database."""
    result: dict[str, Any] = {}
    for table in tables_in(root, database):
        kind = root.query("SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND "
                          "TABLE_NAME=%s", (database, table))[0][0]
        entry: dict[str, Any] = {"type": kind, "columns": columns_of(root, database, table),
                                 "triggers": sorted(triggers_on(root, database, table))}
        if kind == "BASE TABLE":
            # AUTO_INCREMENT is left out: a rolled-back insert moves it (InnoDB never gives ids back).
            entry["create"] = re.sub(r" AUTO_INCREMENT=\d+", "",
                                     root.query(f"SHOW CREATE TABLE {q(database)}.{q(table)}")[0][1])
            entry["content"] = content_checksum(root, database, table)
        result[table] = entry
    return result


class RunnerTrace:
    """The general log (as a table) on, so every statement the runner sends can be read back."""

    def __init__(self, root: RootServer) -> None:
        self.root = root
        self.started = None

    def start(self) -> RunnerTrace:
        self.root.execute("SET GLOBAL log_output = 'TABLE'", "SET GLOBAL general_log = 1")
        self.started = self.root.query("SELECT NOW(6)")[0][0]
        return self

    def stop(self) -> None:
        self.root.execute("SET GLOBAL general_log = 0")

    def runner_statements(self) -> list[tuple[str, str]]:
        """(command_type, argument) of every statement from the runner's user since start()."""
        rows = self.root.query(
            "SELECT command_type, argument FROM mysql.general_log WHERE event_time >= %s AND user_host LIKE %s",
            (self.started, f"{TEST_USER}[%"))
        return [(kind, arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg))
                for kind, arg in rows]

    def runner_statements_about(self, *names: str) -> list[tuple[str, str]]:
        """Runner statements (connects included) that mention any of ``names``."""
        return [(k, a) for k, a in self.runner_statements() if any(n in a for n in names)]

    def binlog_events_about(self, since: tuple[str, int], *names: str) -> list[str]:
        """Binlog events written since ``since`` whose text mentions any of ``names``."""
        found = []
        for file in [r[0] for r in self.root.query("SHOW BINARY LOGS")]:
            if file < since[0]:
                continue
            sql = f"SHOW BINLOG EVENTS IN '{file}'" + (f" FROM {since[1]}" if file == since[0] else "")
            for row in self.root.query(sql):
                info = row[5].decode() if isinstance(row[5], bytes) else str(row[5])
                if any(n in info for n in names):
                    found.append(info)
        return found


def stage_raw(sqlite_path, *, database: str, ddl_statement: str, cluster_name: str = "primary", status: int = 0,
              runtype: int = 1) -> int:
    """A valid staged migration row written straight into the reference API's store; its id.

    The row holds Rails' columns only. What a hostile case sets beyond it (a table,
    host or port Rails would derive, a DDL Rails' parser would drop from ``staged``, a
    lock_version of the wrong type) is served by ``BrokenUpstream.rewrite`` instead, the
    way a broken upstream would serve it.
    """
    now = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    conn = sqlite3.connect(str(sqlite_path), timeout=30)
    try:
        cursor = conn.execute(
            'INSERT INTO migrations (cluster_name, "database", ddl_statement, final_insert, requestor,'
            " status, staged, runtype, initial_runtype, created_at, updated_at)"
            " VALUES (?, ?, ?, '', 'hostile-tests', ?, 1, ?, ?, ?, ?)",
            (cluster_name, database, ddl_statement, status, runtype, runtype, now, now))
        conn.commit()
        return int(cursor.lastrowid)
    finally:
        conn.close()


class BrokenUpstream:
    """A pass-through HTTP proxy to the reference API whose ``staged`` and ``unstage`` answers lie.

    ``rewrite[id]`` maps a listed payload to what is served instead, ``rewrite_claim[id]``
    that migration's unstage answer; ``extra`` entries are served once each, at the head
    of the next ``staged`` answer; ``always`` entries in every one. ``staged_answers``
    counts the ``staged`` answers served (the runner's polls).
    """

    def __init__(self, target_root: str) -> None:
        self.target_root = target_root.rstrip("/")
        self.rewrite: dict[int, Callable[[dict[str, Any]], Any]] = {}
        self.rewrite_claim: dict[int, Callable[[dict[str, Any]], Any]] = {}
        self.extra: list[Any] = []
        self.served_extra: list[Any] = []
        self.always: list[Any] = []
        self.staged_answers = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/v1/"

    def start(self) -> BrokenUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _staged(self, answer: Any) -> Any:
        if not isinstance(answer, list):
            return answer
        served = [self.rewrite[p["id"]](dict(p)) if isinstance(p, dict) and p.get("id") in self.rewrite else p
                  for p in answer]
        with self._lock:
            extra, self.extra = self.extra, []
            self.served_extra += extra
            self.staged_answers += 1
        return extra + list(self.always) + served

    def _claimed(self, answer: Any) -> Any:
        if isinstance(answer, dict) and answer.get("id") in self.rewrite_claim:
            return self.rewrite_claim[answer["id"]](dict(answer))
        return answer

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
                upstream = requests.request(self.command, proxy.target_root + self.path, data=body,
                                            headers=headers, timeout=30)
                content = upstream.content
                path = self.path.split("?")[0]
                if self.command == "GET" and path.endswith("/migrations/staged") and upstream.status_code == 200:
                    content = json.dumps(proxy._staged(upstream.json())).encode()
                if self.command == "POST" and path.endswith("/migrations/unstage") and upstream.status_code == 200:
                    content = json.dumps(proxy._claimed(upstream.json())).encode()
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", upstream.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
