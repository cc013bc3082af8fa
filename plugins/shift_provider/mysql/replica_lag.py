"""Replica lag as pt-osc sees it, so work the runner does itself throttles on the same replicas.

pt-osc waits while any replica it found lags more than ``--max-lag`` seconds or is
stopped. The content checksum runs after the copy, outside pt-osc, and must honour the
same rule: it only reads, but a cluster whose replicas fall behind is a cluster under
strain, and the repairs it may make replicate like the copy's own rows.

The replicas are the ones pt-osc would check, found from the migration's own
``recursion_method`` exactly as pt-osc finds them:

- ``none``: no replica is checked;
- ``dsn=D=db,t=table``: the ``h=`` and ``P=`` of each row of that table on the migration's
  server (nothing else is taken from a row: no user, password or option file);
- ``processlist``, ``hosts`` or nothing (pt-osc's default, ``processlist,hosts``): the hosts of
  the primary's binlog-dump threads (at the primary's port, as pt-osc assumes), else the
  replicas that registered themselves (``SHOW SLAVE HOSTS``: report host and port).

A replica is connected to with the runner's own credentials, as pt-osc connects to it in
the same copy; the primary itself (same address, or same ``server_id`` under another name)
is never counted as its own replica. A replica that
cannot be reached is reported once and left out, as pt-osc leaves out a replica it cannot
connect to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shift_provider.mysql.sql import qualified

_LOG = logging.getLogger(__name__)
DEFAULT_METHODS = ("processlist", "hosts")


@dataclass(frozen=True)
class Replica:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def methods_of(recursion_method: str | None) -> tuple[str, ...]:
    """pt-osc's methods, in the order it tries them (``dsn=...`` and ``none`` stand alone)."""
    if not recursion_method:
        return DEFAULT_METHODS
    return tuple(part.strip() for part in recursion_method.split(",") if part.strip()) \
        if not recursion_method.startswith("dsn=") else (recursion_method,)


def parse_dsn_row(text: str) -> Replica | None:
    """``h=host,P=port`` from a DSN table row (other keys ignored); None without a host."""
    values = dict(part.split("=", 1) for part in str(text).split(",") if "=" in part)
    host = values.get("h", "").strip()
    port = values.get("P", "3306").strip()
    if not host or not port.isdigit():
        return None
    return Replica(host, int(port))


def discover(hook, recursion_method: str | None, primary: Replica) -> list[Replica]:
    """The replicas pt-osc would check for this migration, the primary itself left out."""
    for method in methods_of(recursion_method):
        if method == "none":
            return []
        if method.startswith("dsn="):
            found = _from_dsn_table(hook, method[4:])
        elif method == "processlist":
            found = _from_processlist(hook, primary.port)
        elif method == "hosts":
            found = _from_slave_hosts(hook)
        else:
            continue
        found = [r for r in dict.fromkeys(found) if r != primary]
        if found:
            return found
    return []


def _from_dsn_table(hook, dsn: str) -> list[Replica]:
    keys = dict(part.split("=", 1) for part in dsn.split(",") if "=" in part)
    rows = hook.get_records(f"SELECT dsn FROM {qualified(keys['D'], keys['t'])} ORDER BY id")
    return [r for r in (parse_dsn_row(row[0]) for row in rows) if r is not None]


def _from_processlist(hook, primary_port: int) -> list[Replica]:
    rows = hook.get_records("SELECT HOST FROM information_schema.PROCESSLIST "
                            "WHERE COMMAND IN ('Binlog Dump', 'Binlog Dump GTID')")
    hosts = [str(row[0]).rsplit(":", 1)[0] for row in rows if row[0]]
    # Replication never uses a socket: pt-osc reads "localhost" as 127.0.0.1.
    return [Replica("127.0.0.1" if host == "localhost" else host, primary_port) for host in hosts]


def _from_slave_hosts(hook) -> list[Replica]:
    cursor_rows = hook.get_records("SHOW SLAVE HOSTS")  # Server_id, Host, Port, Master_id
    return [Replica(str(row[1]), int(row[2])) for row in cursor_rows if row[1] and row[2]]


class LagWatch:
    """Answers "should we wait?" like pt-osc's --max-lag: a reason while a replica lags or is stopped.

    ``connect(replica)`` gives a DB-API connection to a replica (the caller's credentials).
    """

    def __init__(self, replicas: list[Replica], connect: Callable[[Replica], Any], max_lag: int,
                 primary_server_id: int | None = None, note: Callable[[str], None] = _LOG.info) -> None:
        self.replicas = list(replicas)
        self.primary_server_id = primary_server_id
        self.connect = connect
        self.max_lag = max_lag
        self.note = note
        self._connections: dict[Replica, Any] = {}
        self._unreachable: set[Replica] = set()

    def waiting_reason(self) -> str | None:
        """Why to wait now (the first replica over the limit or stopped), or None."""
        for replica in list(self.replicas):
            if replica in self._unreachable:
                continue
            lag = self._lag(replica)
            if lag == "unreachable":
                continue
            if lag is None:
                return f"replica {replica} is stopped (no Seconds_Behind_Master); waiting"
            if lag > self.max_lag:
                return f"replica {replica} lags {lag}s (max_replication_lag {self.max_lag}s); waiting"
        return None

    def _lag(self, replica: Replica) -> int | None | str:
        try:
            conn = self._connections.get(replica)
            if conn is None:
                conn = self.connect(replica)
                if self._is_primary(conn):  # the primary under another name: pt-osc skips it too
                    conn.close()
                    self.replicas.remove(replica)
                    return 0
                self._connections[replica] = conn
            cursor = conn.cursor()
            cursor.execute("SHOW SLAVE STATUS")
            row = cursor.fetchone()
            names = [d[0] for d in cursor.description or ()]
            cursor.close()
        except Exception as exc:  # noqa: BLE001 - any failure to reach it: pt-osc leaves it out too
            self._connections.pop(replica, None)
            self._unreachable.add(replica)
            self.note(f"replica {replica} cannot be reached ({exc}); its lag is not checked")
            return "unreachable"
        if row is None:
            return 0  # not a replica (any more): nothing to wait for
        value = dict(zip(names, row)).get("Seconds_Behind_Master")
        return None if value is None else int(value)

    def _is_primary(self, conn) -> bool:
        if self.primary_server_id is None:
            return False
        cursor = conn.cursor()
        cursor.execute("SELECT @@server_id")
        (server_id,) = cursor.fetchone()
        cursor.close()
        return int(server_id) == int(self.primary_server_id)

    def close(self) -> None:
        for conn in self._connections.values():
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._connections.clear()


def watch_for(hook, max_lag: int, note: Callable[[str], None]) -> LagWatch:
    """The LagWatch of a migration's cluster hook (a ``ShiftClusterHook``): its replicas, its credentials."""
    from shift_provider.hooks.cluster import ShiftClusterHook

    migration = hook.migration
    primary = Replica(migration.host, migration.port)
    try:
        replicas = discover(hook, migration.custom_options.recursion_method, primary)
        server_id = int(hook.get_first("SELECT @@server_id")[0])
    except Exception as exc:  # noqa: BLE001 - a missing DSN table, no PROCESS privilege...
        note(f"the replicas could not be listed ({exc}); replica lag is not checked")
        return LagWatch([], lambda replica: None, max_lag, note=note)

    def connect(replica: Replica):
        target = migration.model_copy(update={"host": replica.host, "port": replica.port})
        return ShiftClusterHook(target, hook.settings, credentials=hook.credentials, database="").get_conn()

    if replicas:
        note(f"replica lag is checked on {', '.join(map(str, replicas))} (max {max_lag}s)")
    return LagWatch(replicas, connect, max_lag, primary_server_id=server_id, note=note)
