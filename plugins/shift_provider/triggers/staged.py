"""Polls shift for staged migrations on the triggerer, so no worker slot is held while idle."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from shift_provider.staged_ids import log_unaddressable, split


class StagedMigrationsTrigger(BaseTrigger):
    """Fires once ``migrations/staged`` lists something the runner can address (and the stop file is absent).

    Errors are logged and the loop sleeps on every path, so a flapping API can
    neither spin the triggerer nor end the wait. Entries without a usable id are
    logged once (``already_logged``: those the sensor logged) and never fire it.
    """

    def __init__(self, poll_interval: float = 5.0, shift_api_conn_id: str = "shift_api",
                 stop_file_path: str = "", already_logged: list[str] | None = None) -> None:
        super().__init__()
        self.poll_interval = float(poll_interval)
        self.shift_api_conn_id = shift_api_conn_id
        self.stop_file_path = stop_file_path
        self.already_logged = list(already_logged or [])

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "shift_provider.triggers.staged.StagedMigrationsTrigger",
            {"poll_interval": self.poll_interval, "shift_api_conn_id": self.shift_api_conn_id,
             "stop_file_path": self.stop_file_path, "already_logged": self.already_logged},
        )

    def _poll(self) -> list[dict[str, Any]]:
        from shift_provider.hooks.shift_api import ShiftApiHook

        return ShiftApiHook(self.shift_api_conn_id, retry_limit=1, max_retry_seconds=self.poll_interval).staged()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        stopped_logged = False
        logged = set(self.already_logged)
        while True:
            if self.stop_file_path and os.path.exists(self.stop_file_path):
                if not stopped_logged:
                    self.log.warning("stop file %s exists: claiming nothing", self.stop_file_path)
                    stopped_logged = True
            else:
                stopped_logged = False
                try:
                    staged = await asyncio.to_thread(self._poll)
                except Exception as exc:  # keep waiting: the API may come back
                    self.log.warning("polling shift for staged migrations failed: %s", exc)
                else:
                    staged, unaddressable = split(staged)
                    log_unaddressable(self.log, unaddressable, logged)
                    if staged:
                        yield TriggerEvent({"status": "success", "staged": staged})
                        return
            await asyncio.sleep(self.poll_interval)
