"""Waits on the triggerer for staged migrations no run is waiting for, so no worker slot is held while idle."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import TriggerEvent

from shift_provider.contract.staged_ids import log_unaddressable, split
from shift_provider.triggers.arguments import ArgumentsTrigger
from shift_provider.triggers.shared_poll import SharedStagedPoller


def is_new(entry: Any) -> bool:
    """A migration filed and staged at preparing (0): no run exists for it yet.

    An entry whose status is not a number is also "new": the claim fails it with the reason.
    """
    status = entry.get("status") if isinstance(entry, dict) else None
    return not isinstance(status, int) or isinstance(status, bool) or status == 0


class StagedMigrationsTrigger(ArgumentsTrigger):
    """Fires once ``staged`` lists something the sensor DAG should claim (and the stop file is absent).

    A migration at preparing (0) fires at once: its run starts with the claim. A migration
    staged at another status (3, 5, 9, 11) is usually claimed within one interval by the
    run waiting for it; only one listed unchanged for ``adopt_after`` seconds fires, to be
    adopted by a new run (no run waits for it). The poll itself is shared with every
    other waiting trigger of the process (``shared_poll``). Entries without a usable id
    are logged once (``already_logged``: those the sensor logged) and never fire it.
    """

    ARGUMENTS = ("poll_interval", "shift_api_conn_id", "stop_file_path", "already_logged", "adopt_after")

    def __init__(self, poll_interval: float = 5.0, shift_api_conn_id: str = "shift_api",
                 stop_file_path: str = "", already_logged: list[str] | None = None,
                 adopt_after: float = 30.0) -> None:
        super().__init__()
        self.poll_interval = float(poll_interval)
        self.shift_api_conn_id = shift_api_conn_id
        self.stop_file_path = stop_file_path
        self.already_logged = list(already_logged or [])
        self.adopt_after = float(adopt_after)

    def due(self, poller: SharedStagedPoller, staged: list[Any]) -> list[Any]:
        """The entries to claim now: new ones, and others nobody claimed for ``adopt_after`` seconds."""
        now = time.monotonic()
        return [e for e in staged
                if is_new(e) or now - (poller.listed_since(e) or now) >= self.adopt_after]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        stopped_logged = False
        logged = set(self.already_logged)
        poller = SharedStagedPoller.subscribe(self.shift_api_conn_id, self.poll_interval)
        seen = 0
        try:
            while True:
                snapshot = await poller.next_snapshot(seen)
                seen = snapshot.seq
                if self.stop_file_path and os.path.exists(self.stop_file_path):
                    if not stopped_logged:
                        self.log.warning("stop file %s exists: claiming nothing", self.stop_file_path)
                        stopped_logged = True
                    continue
                stopped_logged = False
                if snapshot.error is not None:
                    continue
                staged, unaddressable = split(snapshot.staged)
                log_unaddressable(self.log, unaddressable, logged)
                due = self.due(poller, staged)
                if due:
                    yield TriggerEvent({"status": "success", "staged": due})
                    return
        finally:
            poller.unsubscribe()
