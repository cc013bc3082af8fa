"""The copy's content checksum (issue 17): real MariaDB, the real pt-osc, run through dag.test().

The copy ends by comparing the shadow table with the original chunk by chunk; a
chunk that differs is copied again once, and a difference that survives that is an
error (13) with the differing keys named, and nothing is swapped.
"""

from __future__ import annotations

import pytest

from shift_provider.contract.codes import Status
from tests.support.airflow import run_dag, task_states, xcoms
from tests.support.tables import (BackgroundWriter, columns_of, content_checksum, create_sample_table, q, tables_in,
                                 triggers_on)

ADD = "ALTER TABLE t ADD COLUMN extra INT NOT NULL DEFAULT 7, ADD INDEX idx_extra (extra)"


@pytest.fixture
def env(airflow_home, shift_settings, shift_api, primary, database, ptosc):
    return shift_settings(pt_osc_path=ptosc[0], checksum_chunk_seconds=0.05)


def started(shift_api, database: str, ddl: str = ADD) -> dict:
    created = shift_api.create(ddl, database=database, custom_options={"recursion_method": "none"})
    shift_api.drive_to_start(created["id"])
    return shift_api.claim(created["id"])


def test_a_good_copy_is_proven_chunk_by_chunk_under_writes(env, shift_api, primary, database):
    create_sample_table(primary, database, "t", 30000)
    conf = started(shift_api, database)
    writer = BackgroundWriter(primary, database, "t").start()
    try:
        run = run_dag("shift_test_copy", conf)
    finally:
        writer.stop()
    assert task_states(run) == {"copy": "success"}, shift_api.log_file(conf["id"])[-3000:]
    assert shift_api.migration(conf["id"])["status"] == Status.AWAITING_RENAME
    pushed = xcoms(run)["copy"]
    result = pushed["checksum"]
    assert result["rows"] >= 30000 and result["chunks"] > 3, result  # small chunks: 0.05 s target
    assert (result["chunks_repaired"], result["rows_repaired"]) == (0, 0)
    assert pushed["checksum_percentage"] == 100 and pushed["copy_percentage"] == 100
    assert shift_api.state(conf["id"]).checksum == result
    assert "checksum: the shadow table equals the original" in shift_api.log_file(conf["id"])
    assert writer.missing_rows() == set() and len(triggers_on(primary, database, "t")) == 3


def test_rows_lost_or_changed_behind_ptosc_are_repaired_and_the_swap_is_exact(env, shift_settings, shift_api,
                                                                             primary, database):
    create_sample_table(primary, database, "t", 12000)
    conf = started(shift_api, database)
    assert task_states(run_dag("shift_test_copy", conf)) == {"copy": "success"}
    before = content_checksum(primary, database, "t")
    original_columns = columns_of(primary, database, "t")
    # Behind pt-osc's back (no trigger fires on the shadow): rows lost and rows changed.
    shadow = shift_api.state(conf["id"]).new_table
    primary.execute(f"DELETE FROM {q(database)}.{q(shadow)} WHERE id BETWEEN 100 AND 149",
                    f"UPDATE {q(database)}.{q(shadow)} SET name = 'corrupted' WHERE id BETWEEN 9000 AND 9029")
    assert content_checksum(primary, database, shadow, original_columns) != before

    shift_settings(checksum_at_rename=True, checksum_chunk_seconds=0.05)
    assert shift_api.human("rename", conf["id"]).status_code == 200
    run = run_dag("shift_test_rename", shift_api.claim(conf["id"]))
    assert task_states(run) == {"rename": "success"}
    result = xcoms(run)["rename"]["checksum"]
    assert result["chunks_repaired"] >= 2 and result["rows_repaired"] >= 80, result
    assert shift_api.migration(conf["id"])["status"] == Status.COMPLETED
    assert content_checksum(primary, database, "t", original_columns) == before
    assert "extra" in columns_of(primary, database, "t")


def test_a_conversion_that_changes_values_is_an_error_naming_the_key_and_nothing_is_swapped(
        env, shift_api, primary, database):
    primary.execute(f"CREATE TABLE {q(database)}.t (id INT PRIMARY KEY, big BIGINT NOT NULL)",
                    f"INSERT INTO {q(database)}.t SELECT seq, 16777216 + seq FROM {q(database)}.seq_1_to_3000")
    before = content_checksum(primary, database, "t")
    conf = started(shift_api, database, "ALTER TABLE t MODIFY big FLOAT NOT NULL")  # FLOAT keeps 24 bits
    run = run_dag("shift_test_copy", conf)
    assert task_states(run) == {"copy": "failed"}
    migration = shift_api.migration(conf["id"])
    assert migration["status"] == Status.ERROR, migration
    assert "even after copying it again" in migration["error_message"], migration["error_message"]
    assert "first differing keys: [1," in migration["error_message"], migration["error_message"]
    assert "bigint" in primary.query(f"SHOW CREATE TABLE {q(database)}.t")[0][1]
    assert content_checksum(primary, database, "t") == before


def test_a_new_unique_key_over_duplicates_cannot_lose_rows(env, shift_settings, shift_api, ptosc, primary,
                                                            database):
    # pt-osc runs with --no-check-unique-key-change (the runner checks the key itself): its INSERT IGNORE
    # would drop the duplicates. The runner's own check refuses before pt-osc; were it passed, the
    # checksum's re-copy (no IGNORE) would fail on the first duplicate instead of losing rows.
    create_sample_table(primary, database, "t", 3000)  # amount = seq % 1000: each value three times
    before = content_checksum(primary, database, "t")
    conf = started(shift_api, database, "ALTER TABLE t ADD UNIQUE KEY u_amount (amount)")
    run = run_dag("shift_test_copy", conf)
    assert task_states(run) == {"copy": "failed"}
    migration = shift_api.migration(conf["id"])
    assert migration["status"] == Status.ERROR
    assert "is not unique" in migration["error_message"] and "0 (3 rows)" in migration["error_message"]
    assert content_checksum(primary, database, "t") == before
    assert "u_amount" not in primary.query(f"SHOW CREATE TABLE {q(database)}.t")[0][1]


def test_the_checksum_alone_refuses_a_copy_that_lost_duplicates_under_a_new_unique_key(env, primary, database):
    """Were the runner's unique-key check passed: the shadow INSERT IGNORE built misses rows, the re-copy fails."""
    from shift_provider.engine import checksum
    from shift_provider.hooks.cluster import ShiftClusterHook
    from shift_provider.contract.models import Migration
    from shift_provider.settings import get_settings

    create_sample_table(primary, database, "t", 3000)  # amount = seq % 1000: each value three times
    primary.execute(f"CREATE TABLE {q(database)}.shadow LIKE {q(database)}.t",
                    f"ALTER TABLE {q(database)}.shadow ADD UNIQUE KEY u_amount (amount)",
                    f"INSERT IGNORE INTO {q(database)}.shadow SELECT * FROM {q(database)}.t")
    migration = Migration.from_payload({"id": 1, "database": database, "table": "t", "status": 3, "runtype": 1,
                                        "ddl_statement": "ALTER TABLE t ADD UNIQUE KEY u_amount (amount)",
                                        "host": primary.host, "port": primary.port, "mode": 0, "action": 2})
    notes: list[str] = []
    with pytest.raises(checksum.ChecksumMismatch) as refused:
        checksum.compare(ShiftClusterHook(migration, get_settings()), database, "t", "shadow", renamed_columns=(),
                         max_threads_running=125, chunk_seconds=0.05, progress=lambda p, e: None, note=notes.append)
    assert "copying it again failed" in str(refused.value) and "Duplicate entry" in str(refused.value)
    assert "first differing keys: [" in str(refused.value)
    assert primary.query(f"SELECT COUNT(*) FROM {q(database)}.shadow")[0][0] == 1000, "the failed re-copy rolled back"


def test_the_checksum_waits_while_a_replica_is_stopped_and_goes_on_when_it_runs(shift_settings, cluster):
    """The copy's own --max-lag rule: replicas found through the migration's recursion_method (a DSN table)."""
    import threading
    import time

    from shift_provider.engine import checksum
    from shift_provider.mysql import replica_lag
    from shift_provider.hooks.cluster import ShiftClusterHook
    from shift_provider.contract.models import Migration

    source, replica = cluster
    settings = shift_settings()
    database = "lagged"
    create_sample_table(source, database, "t", 20000)
    source.execute(f"CREATE TABLE {q(database)}.shadow LIKE {q(database)}.t",
                   f"INSERT INTO {q(database)}.shadow SELECT * FROM {q(database)}.t",
                   f"CREATE TABLE {q(database)}.dsns (id INT AUTO_INCREMENT PRIMARY KEY, parent_id INT NULL,"
                   " dsn VARCHAR(255) NOT NULL)",
                   f"INSERT INTO {q(database)}.dsns (dsn) VALUES ('h=127.0.0.1,P={replica.port}')")
    replica.wait_replica_caught_up(source)
    migration = Migration.from_payload({
        "id": 1, "database": database, "table": "t", "status": 3, "runtype": 1, "mode": 0, "action": 2,
        "ddl_statement": "ALTER TABLE t ADD COLUMN extra INT", "host": source.host, "port": source.port,
        "custom_options": {"recursion_method": f"dsn=D={database},t=dsns", "max_replication_lag": "1"}})
    hook = ShiftClusterHook(migration, settings)
    notes: list[str] = []
    watch = replica_lag.watch_for(hook, 1, notes.append)
    assert watch.replicas == [replica_lag.Replica("127.0.0.1", replica.port)], notes
    replica.execute("STOP SLAVE SQL_THREAD")
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = checksum.compare(hook, database, "t", "shadow", renamed_columns=(),
                                             max_threads_running=125, chunk_seconds=0.05,
                                             progress=lambda p, e: None, note=notes.append,
                                             lag_reason=watch.waiting_reason)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    try:
        worker.start()
        deadline = time.monotonic() + 60
        while not any("pausing because replica" in n for n in notes) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)  # it really waits: no result while the replica is stopped
        assert worker.is_alive() and "result" not in box, (box, notes)
    finally:
        replica.execute("START SLAVE SQL_THREAD")
    worker.join(60)
    watch.close()
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result.rows == 20000 and result.chunks_repaired == 0
    assert result.throttled_seconds >= 2, result
    assert any(f"replica 127.0.0.1:{replica.port} is stopped" in n for n in notes), notes
    assert "checksum: going on" in notes


def test_a_pause_during_the_checksum_stops_it_and_keeps_the_finished_copy(env, shift_settings, shift_api, primary,
                                                                          database):
    """The pause stops the checksum between chunks; the copy task waits at 12 (deferred) with the finished copy
    kept; the resume wakes it, the copy goes on from its checkpoint (nothing left to copy) and is proven."""
    import time
    from pathlib import Path

    from tests.support.e2e import Dba

    settings = shift_settings(pt_osc_path=env.pt_osc_path, checksum_chunk_seconds=0.0005)  # ~500 minimum chunks
    create_sample_table(primary, database, "t", 100000)
    conf = started(shift_api, database)
    mid = conf["id"]
    local_log = Path(settings.log_dir) / f"id-{mid}" / "ptosc-output.log"
    paused: dict = {}

    def pause_once_the_checksum_runs() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if local_log.exists() and "checksum: comparing" in local_log.read_text():
                paused["answer"] = shift_api.human("pause", mid).status_code
                return
            time.sleep(0.05)

    def look_then_resume() -> None:
        paused["state"] = shift_api.state(mid)
        paused["log"] = shift_api.log_file(mid)
        paused["triggers"] = triggers_on(primary, database, "t")
        paused["tables"] = tables_in(primary, database)
        assert shift_api.human("resume", mid).status_code == 200

    with Dba(shift_api, mid, {Status.COPY_IN_PROGRESS: pause_once_the_checksum_runs,
                              Status.PAUSED: look_then_resume}):
        run = run_dag("shift_test_copy", conf)
    assert paused.get("answer") == 200, paused
    # While paused (12): the checksum had stopped, unfinished; the copy itself finished, its shadow table and
    # triggers kept for the resume.
    state = paused["state"]
    assert state.copy_status == "stopped" and not state.checksum, state
    assert "stopping the checksum: shift moved migration" in paused["log"], paused["log"][-2000:]
    assert len(paused["triggers"]) == 3 and state.new_table in paused["tables"]
    # Resumed in the same task: from the checkpoint (the rows are all there), then the checksum in full.
    assert task_states(run) == {"copy": "success"}, shift_api.log_file(mid)[-3000:]
    assert shift_api.migration(mid)["status"] == Status.AWAITING_RENAME
    pushed = xcoms(run)["copy"]
    assert pushed["copy_outcome"] == "copied"
    assert pushed["copy_resume"]["resumed"] is True, pushed["copy_resume"]
    assert pushed["checksum"]["rows"] >= 100000 and pushed["checksum_percentage"] == 100, pushed
    assert shift_api.state(mid).checksum == pushed["checksum"]
