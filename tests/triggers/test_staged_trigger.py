"""The staged-migrations trigger: serializes, fires on staged work, waits on errors and the stop file.

Also the poll shared by every waiting trigger of a process, and a run's wait trigger.
"""

from __future__ import annotations

import asyncio
import time

from shift_provider.triggers.migration_wait import MigrationWaitTrigger
from shift_provider.triggers.shared_poll import SharedStagedPoller
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
    calls = []

    def counting_fetch(conn_id, interval):
        calls.append(time.monotonic())
        from shift_provider.hooks.shift_api import ShiftApiHook

        return ShiftApiHook(conn_id, retry_limit=1, max_retry_seconds=interval).staged()

    monkeypatch.setattr(SharedStagedPoller, "fetch", staticmethod(counting_fetch))
    assert first_event(StagedMigrationsTrigger(poll_interval=0.5), timeout=2.2) is None
    assert 2 <= len(calls) <= 6, calls


def test_a_migration_staged_at_a_later_status_is_adopted_only_after_nobody_claimed_it(shift_api, database):
    """A run waiting for the migration claims it within one interval; the sensor DAG adopts only leftovers."""
    mid = shift_api.create(ddl="ALTER TABLE t ADD COLUMN c INT", database=database)["id"]
    shift_api.claim(mid)
    shift_api.machine("next_step", mid)
    shift_api.human("approve", mid)
    assert shift_api.human("start", mid).status_code == 200  # 3, staged: no run waits for it
    assert first_event(StagedMigrationsTrigger(poll_interval=0.2, adopt_after=30), timeout=1.5) is None
    event = first_event(StagedMigrationsTrigger(poll_interval=0.2, adopt_after=0.5), timeout=10)
    assert event is not None and [m["id"] for m in event.payload["staged"]] == [mid]


def test_waiting_triggers_share_one_staged_poll_per_interval(shift_api, database, monkeypatch):
    """Fifty waits and the sensor's trigger in one triggerer cost one `staged` request per interval."""
    calls = []

    def counting_fetch(conn_id, interval):
        calls.append(time.monotonic())
        from shift_provider.hooks.shift_api import ShiftApiHook

        return ShiftApiHook(conn_id).staged()

    monkeypatch.setattr(SharedStagedPoller, "fetch", staticmethod(counting_fetch))
    mid = shift_api.create(ddl="ALTER TABLE t ADD COLUMN c INT", database=database)["id"]
    shift_api.claim(mid)
    shift_api.machine("next_step", mid)  # awaiting approval: its run waits for the start

    async def run():
        waits = [MigrationWaitTrigger(migration_id=mid, act_on=[3, 9], poll_interval=0.5, check_interval=3600)
                 for _ in range(50)]
        sensor = StagedMigrationsTrigger(poll_interval=0.5)
        generators = [t.run() for t in [*waits, sensor]]
        tasks = [asyncio.ensure_future(g.__anext__()) for g in generators]
        await asyncio.sleep(2.6)
        assert not any(t.done() for t in tasks)  # nothing staged: nobody fired
        requests = len(calls)
        await asyncio.to_thread(shift_api.human, "approve", mid)
        await asyncio.to_thread(shift_api.human, "start", mid)
        done, _ = await asyncio.wait(tasks[:-1], timeout=5)
        events = [t.result() for t in done]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for generator in generators:
            await generator.aclose()
        return requests, events

    requests, events = asyncio.run(run())
    assert 4 <= requests <= 7, requests  # ~2.6 s at 0.5 s: one request per interval for all 51 triggers
    assert len(events) == 50 and {e.payload["kind"] for e in events} == {"staged"}
    assert {e.payload["status"] for e in events} == {3}


def test_a_wait_ends_when_the_migration_is_deleted_or_failed(shift_api, database):
    mid = shift_api.create(ddl="ALTER TABLE t ADD COLUMN c INT", database=database)["id"]
    shift_api.claim(mid)
    shift_api.machine("fail", mid, error_message="broken")
    event = first_event(MigrationWaitTrigger(migration_id=mid, act_on=[3, 9], poll_interval=0.2), timeout=5)
    assert event.payload == {"kind": "ended", "status": 10, "reason": "shift shows status 10"}
    gone = shift_api.create(ddl="ALTER TABLE t ADD COLUMN d INT", database=database)["id"]
    shift_api.claim(gone)
    shift_api.machine("next_step", gone)
    assert shift_api.request("DELETE", f"migrations/{gone}",
                             {"lock_version": shift_api.migration(gone)["lock_version"]}).status_code < 300
    event = first_event(MigrationWaitTrigger(migration_id=gone, act_on=[3, 9], poll_interval=0.2), timeout=5)
    assert event.payload["kind"] == "ended" and event.payload["status"] is None


def test_wait_trigger_serialization_round_trip():
    trigger = MigrationWaitTrigger(migration_id=7, act_on=[5, 9], shift_api_conn_id="x", poll_interval=2,
                                   check_interval=60)
    classpath, kwargs = trigger.serialize()
    assert classpath == "shift_provider.triggers.migration_wait.MigrationWaitTrigger"
    assert MigrationWaitTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_every_trigger_serializes_every_constructor_argument():
    """The triggerer rebuilds a trigger from serialize(): an argument missing there would be lost."""
    import inspect

    for trigger in (StagedMigrationsTrigger, MigrationWaitTrigger):
        parameters = set(inspect.signature(trigger.__init__).parameters) - {"self"}
        assert set(trigger.ARGUMENTS) == parameters, trigger
