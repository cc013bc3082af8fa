"""Paths where two things happen at once: pause/cancel during a copy, copies on two clusters.

The copy runs in its own process (another worker), the pause or cancel is
claimed and run here, as Airflow would on a second worker. The ALTERs add an
index, so they cannot be instant and really go through pt-osc.
"""

from __future__ import annotations

import time

import pytest

from tests.support.e2e import claim_and_run, claim_only, spawn_migration_run
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


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def copying(api, mid):
    m = api.migration(mid)
    return m["status"] == 3 and m["copy_percentage"] not in (None, "", 0, "0") and m["run_host"]


@pytest.fixture
def e2e(airflow_home, shift_api, shift_settings):
    shift_settings(ptosc_extra_args=SLOW_COPY)
    return shift_api


def test_pause_mid_copy_then_resume(e2e, primary, database, tmp_path):
    create_sample_table(primary, database, "t", 6000)
    mid = e2e.create(ddl="ALTER TABLE t ADD COLUMN paused_col INT, ADD INDEX idx_paused (paused_col)", database=database)["id"]
    to_started(e2e, mid)
    (_, conf), = claim_only()
    copy = spawn_migration_run(conf, tmp_path / "worker-a")
    wait_for(lambda: copying(e2e, mid), 60, "the copy to make progress")
    human(e2e, "pause", str(mid))
    paused_at = time.monotonic()
    runs = claim_and_run()
    assert [str(r.state) for _, r in runs] == ["success"]
    assert copy.wait(timeout=60) == 0, copy.log_path.read_text()[-3000:]
    assert time.monotonic() - paused_at < 30
    assert e2e.migration(mid)["status"] == 12

    human(e2e, "resume", str(mid))
    writer = BackgroundWriter(primary, database, "t").start()
    runs = claim_and_run()
    assert [str(r.state) for _, r in runs] == ["success"]
    assert e2e.migration(mid)["status"] == 4
    human(e2e, "rename", str(mid))
    runs = claim_and_run()
    writer.stop()
    assert [str(r.state) for _, r in runs] == ["success"]
    assert e2e.migration(mid)["status"] == 8
    assert "paused_col" in columns_of(primary, database, "t")
    assert writer.missing_rows() == set() and triggers_on(primary, database) == []


def test_cancel_mid_copy_leaves_nothing_on_the_source(e2e, primary, database, tmp_path):
    create_sample_table(primary, database, "t", 6000)
    before = content_checksum(primary, database, "t")
    mid = e2e.create(ddl="ALTER TABLE t ADD COLUMN canceled_col INT, ADD INDEX idx_canceled (canceled_col)", database=database)["id"]
    to_started(e2e, mid)
    (_, conf), = claim_only()
    copy = spawn_migration_run(conf, tmp_path / "worker-a")
    wait_for(lambda: copying(e2e, mid), 60, "the copy to make progress")
    human(e2e, "cancel", str(mid))
    runs = claim_and_run()
    assert [str(r.state) for _, r in runs] == ["success"], runs
    assert copy.wait(timeout=60) == 0, copy.log_path.read_text()[-3000:]
    assert e2e.migration(mid)["status"] == 9
    assert tables_in(primary, database) == ["t"] and triggers_on(primary, database) == []
    assert content_checksum(primary, database, "t") == before
    assert "canceled_col" not in columns_of(primary, database, "t")


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
            create_sample_table(server, "twoclusters", "t", 6000)
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
        wait_for(lambda: all(copying(api, mid) for mid in ids), 90, "both copies running at once")
        for proc in procs:
            assert proc.wait(timeout=120) == 0, proc.log_path.read_text()[-3000:]
        assert all(api.migration(mid)["status"] == 4 for mid in ids)
    finally:
        api.stop()
        second.destroy()
        primary.execute("DROP DATABASE IF EXISTS twoclusters")
