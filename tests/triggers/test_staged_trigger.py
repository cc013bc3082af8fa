"""The staged-migrations trigger: serializes, fires on staged work, waits on errors and the stop file."""

from __future__ import annotations

import asyncio
import time

from shift_provider.triggers.staged import StagedMigrationsTrigger
from tests.support.mariadb import free_port


def first_event(trigger: StagedMigrationsTrigger, timeout: float):
    async def run():
        agen = trigger.run()
        try:
            return await asyncio.wait_for(agen.__anext__(), timeout)
        except asyncio.TimeoutError:
            return None
        finally:
            await agen.aclose()

    return asyncio.run(run())


def test_serialization_round_trip():
    trigger = StagedMigrationsTrigger(poll_interval=2.5, shift_api_conn_id="other", stop_file_path="/tmp/x")
    classpath, kwargs = trigger.serialize()
    assert classpath == "shift_provider.triggers.staged.StagedMigrationsTrigger"
    rebuilt = StagedMigrationsTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)


def test_fires_with_the_staged_payloads(shift_api, primary, database):
    created = shift_api.create(ddl="ALTER TABLE t ADD COLUMN c INT", database=database)
    event = first_event(StagedMigrationsTrigger(poll_interval=0.2), timeout=10)
    assert event is not None and event.payload["status"] == "success"
    assert [m["id"] for m in event.payload["staged"]] == [created["id"]]
    assert event.payload["staged"][0]["staged"] is True


def test_waits_while_nothing_is_staged_and_while_the_stop_file_exists(shift_api, tmp_path, database):
    assert first_event(StagedMigrationsTrigger(poll_interval=0.2), timeout=1.5) is None
    stop = tmp_path / "stop"
    stop.touch()
    shift_api.create(ddl="ALTER TABLE t ADD COLUMN c INT", database=database)
    assert first_event(StagedMigrationsTrigger(poll_interval=0.2, stop_file_path=str(stop)), timeout=1.5) is None
    stop.unlink()
    assert first_event(StagedMigrationsTrigger(poll_interval=0.2, stop_file_path=str(stop)), timeout=10) is not None


def test_an_unreachable_api_is_polled_at_the_interval_not_spun(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SHIFT_API", f"http://127.0.0.1:{free_port()}/api/v1/")
    trigger = StagedMigrationsTrigger(poll_interval=0.5)
    calls = []
    original = trigger._poll

    def counting_poll():
        calls.append(time.monotonic())
        return original()

    trigger._poll = counting_poll
    assert first_event(trigger, timeout=2.2) is None
    assert 2 <= len(calls) <= 6, calls
