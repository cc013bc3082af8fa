"""One ``migrations/staged`` poll per interval for every trigger of a triggerer process.

Hundreds of runs may wait at once (for approval, start, rename, resume); each waits in a
trigger on the triggerer. Were each to poll shift, the API would see hundreds of
requests per interval. Instead every trigger of one event loop subscribes to the poller
keyed by (API connection, interval): one background task asks ``staged`` once per
interval and wakes all subscribers with the same answer. When the last subscriber
leaves, the task ends.

The poller also remembers since when each entry (id, status, lock_version) has been
listed, so the sensor DAG can leave a migration a waiting run claims within one
interval to that run, and adopt only what nobody claimed for a while.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    """One answer of ``staged`` (or the error that replaced it) and when it was taken."""

    seq: int
    staged: list[Any] = field(default_factory=list)
    error: str | None = None
    taken_at: float = 0.0


def entry_key(entry: Any) -> tuple[Any, Any, Any] | None:
    if not isinstance(entry, dict):
        return None
    return (entry.get("id"), entry.get("status"), entry.get("lock_version"))


class SharedStagedPoller:
    """The poller of one (event loop, API connection, interval); get it with :meth:`subscribe`."""

    _pollers: dict[tuple[int, str, float], SharedStagedPoller] = {}
    # Replaced in tests to count requests; the default asks the real API through the hook.
    fetch: Callable[[str, float], list[Any]] | None = None

    def __init__(self, conn_id: str, interval: float) -> None:
        self.conn_id = conn_id
        self.interval = interval
        self.subscribers = 0
        self.snapshot = Snapshot(seq=0)
        self.first_seen: dict[tuple[Any, Any, Any], float] = {}
        self.requests = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task | None = None

    # -- subscription ----------------------------------------------------------------------

    @classmethod
    def subscribe(cls, conn_id: str, interval: float) -> SharedStagedPoller:
        key = (id(asyncio.get_running_loop()), conn_id, float(interval))
        poller = cls._pollers.get(key)
        if poller is None or poller._task is None or poller._task.done():
            poller = cls._pollers[key] = cls(conn_id, float(interval))
            poller._task = asyncio.get_running_loop().create_task(poller._loop(key))
        poller.subscribers += 1
        return poller

    def unsubscribe(self) -> None:
        self.subscribers -= 1
        if self.subscribers <= 0 and self._task is not None:
            self._task.cancel()

    async def next_snapshot(self, after: int) -> Snapshot:
        """The first snapshot newer than ``after`` (waits for the next poll when there is none)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.snapshot.seq > after)
            return self.snapshot

    def listed_since(self, entry: Any) -> float | None:
        """Monotonic time since which this entry (same id, status, lock_version) has been listed."""
        key = entry_key(entry)
        return self.first_seen.get(key) if key is not None else None

    # -- the one poll loop -----------------------------------------------------------------

    def _fetch(self) -> list[Any]:
        fetch = type(self).fetch
        if fetch is not None:
            return fetch(self.conn_id, self.interval)
        from shift_provider.hooks.shift_api import ShiftApiHook

        return ShiftApiHook(self.conn_id, retry_limit=1, max_retry_seconds=self.interval).staged()

    async def _loop(self, key: tuple[int, str, float]) -> None:
        try:
            while True:
                self.requests += 1
                try:
                    staged = await asyncio.to_thread(self._fetch)
                    error = None
                except Exception as exc:  # keep waiting: the API may come back
                    staged, error = [], str(exc)
                    log.warning("polling shift for staged migrations failed: %s", exc)
                now = time.monotonic()
                if error is None:
                    listed = {entry_key(e) for e in staged} - {None}
                    self.first_seen = {k: self.first_seen.get(k, now) for k in listed}
                async with self._changed:
                    self.snapshot = Snapshot(seq=self.snapshot.seq + 1, staged=list(staged), error=error,
                                             taken_at=now)
                    self._changed.notify_all()
                await asyncio.sleep(self.interval)
        finally:
            if self._pollers.get(key) is self:
                del self._pollers[key]
