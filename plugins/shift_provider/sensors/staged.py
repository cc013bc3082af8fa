"""A deferrable sensor that waits for staged migrations and returns them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.bases.sensor import PokeReturnValue
from airflow.sdk.exceptions import AirflowException

from shift_provider.contract.staged_ids import log_unaddressable, split
from shift_provider.settings import get_settings
from shift_provider.triggers.staged import StagedMigrationsTrigger, is_new


class StagedMigrationsSensor(BaseSensorOperator):
    """Pokes ``migrations/staged`` once, then defers to the triggerer until something is staged.

    Returns (XCom) the staged payloads exactly as the API listed them, except entries
    without a usable id: those are logged once and never wake it (see ``staged_ids``).
    The first poke takes only new migrations (preparing); one staged at a later status
    is left to the run waiting for it, and adopted only by the trigger, once it stayed
    unclaimed for ``adopt_staged_after`` seconds.
    """

    template_fields: Sequence[str] = ("shift_api_conn_id",)

    def __init__(self, *, shift_api_conn_id: str | None = None, poll_interval: float | None = None,
                 deferrable: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("timeout", timedelta(hours=1).total_seconds())
        kwargs.setdefault("soft_fail", True)
        super().__init__(**kwargs)
        self.shift_api_conn_id = shift_api_conn_id
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self._logged: set[str] = set()  # fingerprints of unaddressable entries already logged

    def _hook(self):
        from shift_provider.hooks.shift_api import ShiftApiHook

        settings = get_settings()
        return ShiftApiHook(self.shift_api_conn_id or settings.api_conn_id, settings=settings)

    def poke(self, context: Any) -> PokeReturnValue:
        settings = get_settings()
        if settings.stop_requested:
            self.log.warning("stop file %s exists: claiming nothing", settings.stop_file_path)
            return PokeReturnValue(is_done=False)
        staged, unaddressable = split(self._hook().staged())
        log_unaddressable(self.log, unaddressable, self._logged)
        new = [entry for entry in staged if is_new(entry)]
        return PokeReturnValue(is_done=bool(new), xcom_value=new)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        settings = get_settings()
        self.defer(
            trigger=StagedMigrationsTrigger(
                poll_interval=self.poll_interval or settings.staged_poll_interval,
                shift_api_conn_id=self.shift_api_conn_id or settings.api_conn_id,
                stop_file_path=settings.stop_file_path,
                already_logged=sorted(self._logged),
                adopt_after=settings.adopt_staged_after,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> list[dict[str, Any]]:
        if event.get("status") != "success":
            raise AirflowException(f"waiting for staged migrations failed: {event}")
        self.log.info("%d staged migration(s): %s", len(event["staged"]),
                      [m.get("id") if isinstance(m, dict) else m for m in event["staged"]])
        return event["staged"]
