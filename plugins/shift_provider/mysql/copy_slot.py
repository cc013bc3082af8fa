"""One copy at a time per cluster: a named lock on the cluster, held by the copy for its whole length.

With one run per migration there is a single ``copy`` task for every cluster, so Airflow
cannot serialize copies per cluster any more; a burst of approvals must still not put two
pt-osc copies on one database server. The copy takes ``GET_LOCK('shift_copy:<cluster>', 0)``
on a connection of its own to the cluster and keeps it until it ends. MariaDB releases a
named lock when its connection closes, so a killed task or a lost worker frees the slot by
itself. A named lock touches no table. When the slot is taken, the copy task defers (no
worker slot held) and tries again.
"""

from __future__ import annotations

from typing import Any

from shift_provider.contract.models import Migration

LOCK_PREFIX = "shift_copy:"
# Longer than any copy: the server must not drop the idle lock-holding connection mid-copy.
HOLD_SECONDS = 31536000


def lock_name(migration: Migration) -> str:
    return (LOCK_PREFIX + (migration.cluster_name or f"{migration.host}:{migration.port}"))[:64]


class CopySlot:
    """The cluster's copy slot; ``take()`` returns None when taken for us, else the holder's connection id."""

    def __init__(self, hook: Any, name: str) -> None:
        self.hook = hook
        self.name = name
        self._conn: Any = None

    def take(self) -> int | None:
        conn = self.hook.get_conn()
        try:
            cursor = conn.cursor()
            cursor.execute(f"SET SESSION wait_timeout = {HOLD_SECONDS}")
            cursor.execute("SELECT GET_LOCK(%s, 0), IS_USED_LOCK(%s)", (self.name, self.name))
            got, holder = cursor.fetchone()
        except BaseException:
            conn.close()
            raise
        if got == 1:
            self._conn = conn
            return None
        conn.close()
        return int(holder or 0)

    def release(self) -> None:
        """Closing the connection releases the lock (also what happens when the task dies)."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
