"""Waits on the triggerer until a human moves one migration: a run's waiting task defers to this.

It fires when shift shows the migration staged at a status the task acts on (the
awaited one, or a cancel), or at a status that ends the run (completed, failed, a
cancel someone else handled, deleted). The ``staged`` answer comes from the poll shared
by every trigger of the process (``shared_poll``): 300 waiting runs cost one request per
interval. ``staged`` lists at most two entries, so each trigger also reads its own
migration (``show``) when it starts and every ``check_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import TriggerEvent

from shift_provider.triggers.arguments import ArgumentsTrigger
from shift_provider.triggers.shared_poll import SharedStagedPoller

# Statuses at which a waiting run has nothing left to wait for.
ENDING_STATUSES = (8, 10)  # completed, failed
CANCELED = 9


def verdict(status: int | None, staged: bool, act_on: list[int]) -> dict[str, Any] | None:
    """The event for a migration seen at ``status`` (None: deleted), or None to keep waiting."""
    if status is None:
        return {"kind": "ended", "status": None, "reason": "the migration was deleted in shift"}
    if staged and status in act_on:
        return {"kind": "staged", "status": status}
    if status in ENDING_STATUSES or (status == CANCELED and not staged):
        return {"kind": "ended", "status": status, "reason": f"shift shows status {status}"}
    return None


class MigrationWaitTrigger(ArgumentsTrigger):
    """Fires when migration ``migration_id`` is staged at one of ``act_on``, or its life ended."""

    ARGUMENTS = ("migration_id", "act_on", "shift_api_conn_id", "poll_interval", "check_interval")

    def __init__(self, migration_id: int, act_on: list[int], shift_api_conn_id: str = "shift_api",
                 poll_interval: float = 5.0, check_interval: float = 300.0) -> None:
        super().__init__()
        self.migration_id = int(migration_id)
        self.act_on = [int(s) for s in act_on]
        self.shift_api_conn_id = shift_api_conn_id
        self.poll_interval = float(poll_interval)
        self.check_interval = float(check_interval)

    def _show(self) -> tuple[int | None, bool]:
        """(status, staged) as ``show`` answers now; status None when the migration is gone."""
        from shift_provider.exceptions import ShiftApiError
        from shift_provider.hooks.shift_api import ShiftApiHook

        try:
            answer = ShiftApiHook(self.shift_api_conn_id, retry_limit=1,
                                  max_retry_seconds=self.poll_interval).show(self.migration_id)
        except ShiftApiError as exc:
            if getattr(exc, "status_code", None) == 404:
                return None, False
            raise
        row = answer.get("migration") if isinstance(answer, dict) else None
        status = row.get("status") if isinstance(row, dict) else None
        return (int(status) if isinstance(status, int) else -1), bool(row.get("staged"))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        poller = SharedStagedPoller.subscribe(self.shift_api_conn_id, self.poll_interval)
        seen = 0
        next_check = time.monotonic()
        try:
            while True:
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.check_interval
                    try:
                        status, staged = await asyncio.to_thread(self._show)
                    except Exception as exc:  # keep waiting: the API may come back
                        self.log.warning("reading migration %s failed: %s", self.migration_id, exc)
                    else:
                        event = verdict(status, staged, self.act_on)
                        if event is not None:
                            yield TriggerEvent(event)
                            return
                snapshot = await poller.next_snapshot(seen)
                seen = snapshot.seq
                for entry in snapshot.staged:
                    if isinstance(entry, dict) and entry.get("id") == self.migration_id:
                        event = verdict(entry.get("status"), bool(entry.get("staged", True)), self.act_on)
                        if event is not None:
                            yield TriggerEvent(event)
                            return
        finally:
            poller.unsubscribe()
