"""Paths where two things happen at once: pause/cancel during a copy, copies on two clusters.

The copy runs in its own process (another worker), the pause or cancel is
claimed and run here, as Airflow would on a second worker. The ALTERs add an
index, so they cannot be instant and really go through pt-osc.
"""

from __future__ import annotations

import time

import pytest

from tests.support.airflow import task_states, xcoms
from tests.support.e2e import claim_and_run, claim_only, spawn_migration_run
from tests.support.polling import wait_for
from tests.support.mariadb import MariaDBServer
from tests.support.shift_api import ShiftApiServer, shift_client
from tests.support.tables import (
    BackgroundWriter,
    columns_of,
    content_checksum,
    create_sample_table,
    tables_in,
    triggers_on,
)

SLOW_COPY = ["--chunk-size=100", "--chunk-size-limit=0", "--sleep=0.05"]


def human(api, *args):
    out = shift_client(*args, url=api.url)
    assert out.returncode == 0, out.stderr


def to_started(api, mid, runtype="long"):
    runs = claim_and_run()
    assert [str(r.state) for _, r in runs] == ["success"], runs
    human(api, "approve", str(mid), "--runtype", runtype)
    human(api, "start", str(mid))


def copying(api, mid):
    m = api.migration(mid)
    return m["status"] == 3 and m["copy_percentage"] not in (None, "", 0, "0") and m["run_host"]


@pytest.fixture
def e2e(airflow_home, shift_api, shift_settings):
    shift_settings(ptosc_extra_args=SLOW_COPY)
    return shift_api


def ti_state(task_id: str) -> str | None:
    """The state of ``task_id`` in the shift_migration run going on (read from the metadata DB)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (session.query(TaskInstance).filter(TaskInstance.dag_id == "shift_migration",
                                                 TaskInstance.task_id == task_id)
              .order_by(TaskInstance.start_date.desc()).first())
        return None if ti is None else str(ti.state)


def test_pause_mid_copy_then_resume_in_the_same_task(e2e, primary, database):
    """Pause: the copy task stops pt-osc, moves 11 -> 12 and is deferred (not green); resume continues it."""
    create_sample_table(primary, database, "t", 6000)
    mid = e2e.create(ddl="ALTER TABLE t ADD COLUMN paused_col INT, ADD INDEX idx_paused (paused_col)",
                     database=database)["id"]
    writer = BackgroundWriter(primary, database, "t")
    seen = {}

    def started():
        human(e2e, "start", str(mid))
        wait_for(lambda: copying(e2e, mid), 60, "the copy to make progress")
        human(e2e, "pause", str(mid))

    def paused():  # 12: pt-osc stopped, the copy task waits deferred for the resume
        # Not green: waiting. (dag.test() runs the trigger inline and shows the task queued meanwhile;
        # tests/deployment asserts `deferred` on a real triggerer.)
        time.sleep(1)
        seen["paused_state"] = ti_state("copy")
        assert e2e.migration(mid)["run_host"] is None
        writer.start()
        human(e2e, "resume", str(mid))

    def copied():
        human(e2e, "rename", str(mid))

    runs = claim_and_run(e2e, {1: lambda: human(e2e, "approve", str(mid), "--runtype", "long"), 2: started,
                               12: paused, 4: copied})
    writer.stop()
    (_, run), = runs
    states = task_states(run)
    assert seen["paused_state"] in ("deferred", "queued"), seen["paused_state"]
    assert str(run.state) == "success" and states["copy"] == "success" and states["rename"] == "success", states
    copy_ti = next(ti for ti in run.get_task_instances() if ti.task_id == "copy")
    assert copy_ti.try_number == 1  # the same task: paused, deferred, resumed, copied
    start = xcoms(run)["copy"]["copy_resume"]  # ... and it went on from the paused copy's checkpoint
    assert start["resumed"] is True and start["rows_copied_before"] > 0 and start["boundary"], start
    assert e2e.migration(mid)["status"] == 8
    assert "paused_col" in columns_of(primary, database, "t")
    assert writer.missing_rows() == set() and triggers_on(primary, database) == []


def test_cancel_mid_copy_leaves_nothing_on_the_source(e2e, primary, database):
    create_sample_table(primary, database, "t", 6000)
    before = content_checksum(primary, database, "t")
    mid = e2e.create(ddl="ALTER TABLE t ADD COLUMN canceled_col INT, ADD INDEX idx_canceled (canceled_col)",
                     database=database)["id"]

    def started():
        human(e2e, "start", str(mid))
        wait_for(lambda: copying(e2e, mid), 60, "the copy to make progress")
        human(e2e, "cancel", str(mid))

    (_, run), = claim_and_run(e2e, {1: lambda: human(e2e, "approve", str(mid), "--runtype", "long"), 2: started})
    states = task_states(run)
    # The copy claimed the cancel and cleaned up; it did not copy, so it ends skipped, and so does the rest.
    assert states["copy"] == "skipped" and states["await_rename"] == "skipped" and states["rename"] == "skipped"
    assert "canceled" in xcoms(run)["copy"]["migration_ended"]
    assert e2e.migration(mid)["status"] == 9
    assert tables_in(primary, database) == ["t"] and triggers_on(primary, database) == []
    assert content_checksum(primary, database, "t") == before
    assert "canceled_col" not in columns_of(primary, database, "t")


def test_cancel_while_awaiting_rename_cleans_up_and_ends_the_run(e2e, primary, database):
    create_sample_table(primary, database, "t", 2000)
    before = content_checksum(primary, database, "t")
    mid = e2e.create(ddl="ALTER TABLE t ADD COLUMN c INT, ADD INDEX idx_c (c)", database=database)["id"]

    def copied():
        assert f"_t_new_{mid}" in tables_in(primary, database) and len(triggers_on(primary, database, "t")) == 3
        human(e2e, "cancel", str(mid))

    (_, run), = claim_and_run(e2e, {1: lambda: human(e2e, "approve", str(mid), "--runtype", "long"),
                                    2: lambda: human(e2e, "start", str(mid)), 4: copied})
    states = task_states(run)
    assert states["await_rename"] == "success" and states["rename"] == "skipped", states
    assert "canceled in shift while awaiting rename" in xcoms(run)["await_rename"]["migration_ended"]
    assert e2e.migration(mid)["status"] == 9
    assert tables_in(primary, database) == ["t"] and triggers_on(primary, database) == []
    assert content_checksum(primary, database, "t") == before


def test_two_clusters_copy_at_the_same_time(airflow_home, shift_settings, primary, tmp_path, monkeypatch):
    shift_settings(ptosc_extra_args=SLOW_COPY)
    second = MariaDBServer(server_id=21).start()
    api = ShiftApiServer({"one": (primary.host, primary.port), "two": (second.host, second.port)}).start()
    monkeypatch.setenv("AIRFLOW_CONN_SHIFT_API", api.url)
    try:
        ids = []
        for server, cluster in ((primary, "one"), (second, "two")):
            server.execute("CREATE DATABASE IF NOT EXISTS twoclusters")
            server.execute("DROP TABLE IF EXISTS twoclusters.t")
            # ~300 throttled chunks each: long enough to overlap however late a loaded machine starts the
            # second run's copy (6000 rows finished before the other began once, under 4 test workers).
            create_sample_table(server, "twoclusters", "t", 30000)
            ids.append(api.create(ddl="ALTER TABLE t ADD COLUMN both_col INT, ADD INDEX idx_both (both_col)", database="twoclusters",
                                  cluster=cluster)["id"])
        runs = claim_and_run()
        assert sorted(r.conf["id"] for _, r in runs) == sorted(ids)
        for mid in ids:
            human(api, "approve", str(mid), "--runtype", "long")
            human(api, "start", str(mid))
        claimed = claim_only()
        assert len(claimed) == 2
        procs = [spawn_migration_run(conf, tmp_path / f"worker-{i}") for i, (_, conf) in enumerate(claimed)]
        wait_for(lambda: all(copying(api, mid) for mid in ids), 120, "both copies running at once")
        for proc in procs:
            assert proc.wait(timeout=240) == 0, proc.log_path.read_text()[-3000:]
        assert all(api.migration(mid)["status"] == 4 for mid in ids)
    finally:
        api.stop()
        second.destroy()
        primary.execute("DROP DATABASE IF EXISTS twoclusters")
