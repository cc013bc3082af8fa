"""Real server load for throttling tests: connections that keep running a query.

``Threads_running`` counts every connection executing a statement, ``SELECT SLEEP(n)``
included, so N sleeping connections are N running threads without burning CPU on the
shared test machine.
"""

from __future__ import annotations

import threading

from tests.support.mariadb import MariaDBServer


class RunningThreads:
    """``count`` connections each running ``SELECT SLEEP(seconds)`` until ``stop()`` kills the queries."""

    def __init__(self, server: MariaDBServer, count: int, seconds: int = 600) -> None:
        self.server, self.count, self.seconds = server, count, seconds
        self._connections: list = []
        self._ids: list[int] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> RunningThreads:
        for _ in range(self.count):
            conn = self.server.connect()
            self._connections.append(conn)
            self._ids.append(conn.thread_id())
            thread = threading.Thread(target=self._sleep, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _sleep(self, conn) -> None:
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT SLEEP({int(self.seconds)})")  # returns 1 early when killed
        except Exception:  # the connection was killed outright: the load is gone either way
            pass

    def threads_running(self) -> int:
        return int(self.server.query("SHOW GLOBAL STATUS LIKE 'Threads_running'")[0][1])

    def stop(self) -> None:
        """KILL QUERY each sleeper (SLEEP returns at once), then close the connections."""
        for thread_id in self._ids:
            try:
                self.server.execute(f"KILL QUERY {int(thread_id)}")
            except Exception:  # already finished
                pass
        for thread in self._threads:
            thread.join(timeout=30)
        for conn in self._connections:
            try:
                conn.close()
            except Exception:
                pass
