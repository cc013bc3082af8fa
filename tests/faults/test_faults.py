"""Faults during a copy and a rename, on real servers, run through Airflow (issue 8).

Each case injects one real fault (kill -9, a MariaDB restart, an API outage behind a
real proxy, a stopped replica, a kill between rename sub-steps), checks that shift shows
the right status (never a silent success), lets a human resume or the runner retry, and
ends with the rename: the new table must hold exactly what the swapped-out old table held
on the original columns, and every write the application saw acknowledged must be there.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from shift_provider.contract.codes import Status
from tests.support.airflow import run_dag, task_states, xcoms
from tests.support.e2e import WAITS, Dba, claim_and_run, spawn_migration_run
from tests.support.faults import FaultProxy, kill_group, ptosc_processes
from tests.support.polling import wait_for
from tests.support.mariadb import MariaDBServer
from tests.support.tables import (
    BackgroundWriter,
    columns_of,
    content_checksum,
    create_sample_table,
    q,
    tables_in,
    triggers_on,
)

# Small fixed chunks with a pause between them: the copy lasts long enough to be hit.
SLOW_COPY = ["--chunk-size=500", "--chunk-time=0", "--sleep=0.05"]
DDL = "ALTER TABLE t ADD COLUMN extra INT NOT NULL DEFAULT 7"
COPY_TASK = "copy"
PENDING = "_pending_drops"


# -- the migration's life -----------------------------------------------------------------------

def claimed_copy(api, database: str, **custom) -> dict:
    """A long ALTER at 3 copy in progress, claimed as the runner does: the shift_migration conf."""
    custom.setdefault("recursion_method", "none")
    created = api.create(DDL, database=database, custom_options=custom,
                         final_insert="INSERT INTO audit (note) VALUES ('t altered')")
    api.drive_to_start(created["id"])
    return api.claim(created["id"])


def copying(api, migration_id: int, above: float = 0):
    return lambda: float(api.migration(migration_id).get("copy_percentage") or 0) > above


def prepare_table(server: MariaDBServer, database: str, rows: int) -> None:
    create_sample_table(server, database, "t", rows)
    server.execute(f"CREATE TABLE {q(database)}.audit (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(32))")


def run_step(conf: dict):
    """One shift_migration run in process (dag.test), as a worker would run the claimed step (step mode:
    the human waits marked done, so the run does this claim's step and ends)."""
    return run_dag("shift_migration", conf, mark_success_pattern=WAITS)


def rename_and_check(api, server: MariaDBServer, database: str, migration_id: int, writer: BackgroundWriter) -> None:
    """Writes stop, a human renames, the runner swaps: the new table equals the old on the original columns."""
    writer.stop()
    original = columns_of(server, database, "t")
    assert api.human("rename", migration_id).status_code == 200
    run = run_step(api.claim(migration_id))
    assert task_states(run)["rename"] == "success", task_states(run)
    migration = api.migration(migration_id)
    assert migration["status"] == Status.COMPLETED, migration
    state = api.state(migration_id)
    pending, old = state.retired_to.split(".", 1)
    assert pending == PENDING and old == state.old_table, state
    assert content_checksum(server, database, "t", original) == content_checksum(server, pending, old, original)
    assert writer.missing_rows(server) == set()
    assert writer.operations > 20, writer.operations
    assert columns_of(server, database, "t") == [*original, "extra"]
    assert server.query(f"SELECT COUNT(*) FROM {q(database)}.t WHERE extra <> 7")[0][0] == 0
    assert triggers_on(server, database) == []
    assert sorted(set(tables_in(server, database)) - {"dsns"}) == ["audit", "t"]  # no shadow or old table left
    assert server.query(f"SELECT note FROM {q(database)}.audit") == [("t altered",)]  # exactly once


@pytest.fixture
def fault_env(airflow_home, shift_settings, shift_api, ptosc):
    def configure(**overrides):
        return shift_settings(ptosc_extra_args=SLOW_COPY, pt_osc_path=ptosc[0], pending_drops_db=PENDING,
                              **overrides)
    return configure


# -- (a) kill -9 of the task during the copy ----------------------------------------------------

def resumed(run, api, migration_id: int) -> dict:
    """The copy of ``run`` resumed from the checkpoint (boundary, rows counted; see test_pause_cancel)."""
    from tests.operators.test_pause_cancel import resumed_from_checkpoint

    return resumed_from_checkpoint(xcoms(run)[COPY_TASK], api.log_file(migration_id), 40000)


def test_kill_9_of_the_copy_task_kills_ptosc_and_the_offered_copy_resumes(fault_env, shift_api, primary,
                                                                        database, tmp_path):
    fault_env()
    prepare_table(primary, database, 40000)
    conf = claimed_copy(shift_api, database)
    mid = conf["id"]
    writer = BackgroundWriter(primary, database, "t").start()
    worker = spawn_migration_run(conf, tmp_path / "worker")
    try:
        wait_for(copying(shift_api, mid, above=30), 120, "the copy to pass 30%")
        wait_for(lambda: shift_api.state(mid).checkpoint.get("resumable"), 30, "a checkpoint in shift")
        ptosc = wait_for(lambda: ptosc_processes(worker.pid), 10, "pt-osc under the task")
        assert ptosc[0].pid == os.getpgid(ptosc[0].pid)  # its own group: the task's kill -9 does not reach it
    finally:
        kill_group(worker)  # kill -9 of the whole `airflow dags test` group: no on_kill, no finally
    wait_for(lambda: not ptosc_processes(worker.pid) and not [p for p in ptosc_processes()
                                                              if f"D={database}" in " ".join(p.cmdline())],
             10, "pt-osc to die with its task (parent-death signal)")
    migration = shift_api.migration(mid)
    # Nothing could report: shift still shows the copy running on its (dead) host, and it is not completed.
    assert migration["status"] == Status.COPY_IN_PROGRESS and not migration["staged"] and migration["run_host"]
    assert shift_api.state(mid).copy_status == "running"

    # Airflow fails the lost task after its heartbeat timeout and runs the copy task's failure callback.
    from shift_provider.operators.copy import hand_back_lost_copy

    hand_back_lost_copy({"dag_run": SimpleNamespace(conf=conf)})
    migration = shift_api.migration(mid)
    assert migration["status"] == Status.COPY_IN_PROGRESS and migration["staged"] and not migration["run_host"]

    # The checkpoint survived the hand-back: the sensor DAG claims it again and the copy resumes after it.
    assert shift_api.state(mid).copy_status == "lost" and shift_api.state(mid).checkpoint["resumable"]
    runs = claim_and_run()
    assert [task_states(r)[COPY_TASK] for _, r in runs] == ["success"], runs
    assert shift_api.migration(mid)["status"] == Status.AWAITING_RENAME
    resumed(runs[0][1], shift_api, mid)
    assert shift_api.state(mid).copy_attempts == 2
    rename_and_check(shift_api, primary, database, mid, writer)


# -- (a2) a pause at ~50%, and the stop file, through the migration DAG --------------------------

def test_pause_at_half_then_resume_through_the_migration_dag_continues_from_the_checkpoint(fault_env, shift_api,
                                                                                           primary, database):
    """The copy task of the migration's run stops pt-osc at ~50%, moves to 12 and waits deferred; the resume
    wakes the same task, which goes on after the checkpoint's boundary."""
    fault_env()
    prepare_table(primary, database, 40000)
    conf = claimed_copy(shift_api, database)
    mid = conf["id"]
    writer = BackgroundWriter(primary, database, "t").start()
    paused: dict = {}

    def pause_at_half():
        wait_for(copying(shift_api, mid, above=45), 120, "the copy to pass 45%")
        assert shift_api.human("pause", mid).status_code == 200

    def resume_once_paused():
        paused["migration"] = shift_api.migration(mid)
        paused["state"] = shift_api.state(mid)
        assert shift_api.human("resume", mid).status_code == 200

    with Dba(shift_api, mid, {Status.COPY_IN_PROGRESS: pause_at_half, Status.PAUSED: resume_once_paused}):
        run = run_step(conf)
    # Paused (12) by the copy task itself, unstaged, pt-osc's host released, the checkpoint kept.
    assert paused["migration"]["status"] == Status.PAUSED and not paused["migration"]["staged"]
    assert paused["migration"]["run_host"] is None
    assert paused["state"].copy_status == "stopped" and paused["state"].checkpoint["resumable"]
    # The same copy task, woken by the resume, copied on from the checkpoint.
    assert task_states(run)[COPY_TASK] == "success"
    assert shift_api.migration(mid)["status"] == Status.AWAITING_RENAME
    start = resumed(run, shift_api, mid)
    assert start["percentage"] >= 45
    assert start["boundary"] == paused["state"].checkpoint["upper"]
    assert shift_api.state(mid).copy_attempts == 2
    rename_and_check(shift_api, primary, database, mid, writer)


def test_stop_file_then_another_run_of_the_migration_dag_resumes_from_the_checkpoint(fault_env, shift_api,
                                                                                    primary, database, tmp_path):
    settings = fault_env()
    prepare_table(primary, database, 40000)
    conf = claimed_copy(shift_api, database)
    mid = conf["id"]
    writer = BackgroundWriter(primary, database, "t").start()
    from tests.operators.test_copy import Background

    stopper = Background(lambda: (wait_for(copying(shift_api, mid, above=30), 120, "the copy to pass 30%"),
                                  open(settings.stop_file_path, "w").close()))
    stopper.start()
    run = run_step(conf)
    stopper.join_checked(timeout=120)
    assert task_states(run)[COPY_TASK] == "skipped"  # handed back: not green, nothing copied for a rename
    assert xcoms(run)[COPY_TASK]["copy_outcome"] == "stopped:stop_file"
    migration = shift_api.migration(mid)
    assert migration["status"] == Status.COPY_IN_PROGRESS and migration["staged"]
    os.remove(settings.stop_file_path)
    runs = claim_and_run()  # the offered migration, claimed again by the sensor DAG
    assert [task_states(r)[COPY_TASK] for _, r in runs] == ["success"], runs
    assert shift_api.migration(mid)["status"] == Status.AWAITING_RENAME
    resumed(runs[0][1], shift_api, mid)
    rename_and_check(shift_api, primary, database, mid, writer)


# -- (b) the primary restarts during the copy ----------------------------------------------------

@pytest.fixture
def dedicated():
    server = MariaDBServer(server_id=31).start()
    yield server
    server.destroy()


def test_primary_restart_during_copy_errors_and_the_copy_resumes_from_its_checkpoint(fault_env, shift_api, dedicated):
    server, database = dedicated, "restarted"
    fault_env(host_override=server.host, port_override=server.port)
    prepare_table(server, database, 40000)
    conf = claimed_copy(shift_api, database)
    mid = conf["id"]
    writer = BackgroundWriter(server, database, "t").start()

    import threading

    restarted = threading.Event()

    def restart_mid_copy():
        wait_for(copying(shift_api, mid, above=30), 120, "the copy to pass 30%")
        wait_for(lambda: shift_api.state(mid).checkpoint.get("resumable"), 30, "a checkpoint in shift")
        server.restart()
        restarted.set()

    from tests.operators.test_copy import Background

    restarter = Background(restart_mid_copy)
    restarter.start()
    run = run_step(conf)
    restarter.join_checked(timeout=120)
    assert restarted.is_set()
    assert task_states(run)[COPY_TASK] == "failed"
    migration = shift_api.migration(mid)
    assert migration["status"] == Status.ERROR and migration["run_host"] is None, migration
    assert "pt-online-schema-change exited" in migration["error_message"]
    assert shift_api.state(mid).copy_status == "failed"
    assert not [p for p in ptosc_processes() if f"P={server.port}" in " ".join(p.cmdline())]

    # A transient fault keeps the shadow table, the triggers and the checkpoint.
    assert shift_api.state(mid).checkpoint["resumable"]
    # The DBA clears the failed copy task (it re-runs on the run's claim, as here): it resumes the migration in
    # shift (13 -> 3) with the current lock_version, claims it, and the copy goes on after the checkpoint.
    run = run_step(conf)
    assert task_states(run)[COPY_TASK] == "success"
    assert shift_api.migration(mid)["status"] == Status.AWAITING_RENAME
    resumed(run, shift_api, mid)
    assert writer.errors, "the writer should have seen the restart"
    rename_and_check(shift_api, server, database, mid, writer)


# -- (c) the shift API answers 500, then stalls, for 30 s during the copy -------------------------

@pytest.fixture
def proxy(shift_api, monkeypatch):
    """The runner reaches shift only through the fault proxy; the tests (the human) go direct."""
    fault_proxy = FaultProxy(shift_api.root).start()
    monkeypatch.setenv("AIRFLOW_CONN_SHIFT_API", fault_proxy.url)
    yield fault_proxy
    fault_proxy.stop()


def test_api_outage_during_copy_is_ridden_out(fault_env, shift_api, proxy, primary, database):
    settings = fault_env()
    prepare_table(primary, database, 40000)
    conf = claimed_copy(shift_api, database)
    mid = conf["id"]
    writer = BackgroundWriter(primary, database, "t").start()
    from tests.operators.test_copy import Background

    def outage_mid_copy():
        wait_for(copying(shift_api, mid), 120, "the copy to make progress")
        return proxy.outage(error_seconds=15, stall_seconds=15)

    injector = Background(outage_mid_copy)
    injector.start()
    run = run_step(conf)
    injector.join_checked(timeout=150)
    assert proxy.answered_500 > 0 and proxy.stalled > 0, (proxy.answered_500, proxy.stalled)
    assert task_states(run)[COPY_TASK] == "success", task_states(run)
    migration = shift_api.migration(mid)
    assert migration["status"] == Status.AWAITING_RENAME and migration["run_host"] is None, migration
    assert float(migration["copy_percentage"]) == 100
    assert shift_api.state(mid).copy_status == "succeeded"
    local = (settings.migration_log_dir(mid) / "ptosc-output.log").read_text()
    assert shift_api.log_file(mid) == local  # every line shipped after the outage, none twice
    rename_and_check(shift_api, primary, database, mid, writer)


# -- (d) the replica's SQL thread is stopped for longer than the max lag ---------------------------

def test_stopped_replica_pauses_the_copy_and_it_completes_consistently(fault_env, shift_api, cluster):
    source, replica = cluster
    database = "lagged"
    settings = fault_env(host_override=source.host, port_override=source.port)
    prepare_table(source, database, 30000)
    # pt-osc finds the replica on loopback (distinct port) through a DSN table.
    source.execute(f"CREATE TABLE {q(database)}.dsns (id INT AUTO_INCREMENT PRIMARY KEY, parent_id INT NULL,"
                   " dsn VARCHAR(255) NOT NULL)",
                   f"INSERT INTO {q(database)}.dsns (dsn) VALUES ('h=127.0.0.1,P={replica.port}')")
    replica.wait_replica_caught_up(source)
    conf = claimed_copy(shift_api, database, recursion_method=f"dsn=D={database},t=dsns", max_replication_lag="1")
    mid = conf["id"]
    writer = BackgroundWriter(source, database, "t").start()
    log_path = settings.migration_log_dir(mid) / "ptosc-output.log"
    from tests.operators.test_copy import Background

    def stop_replica_for_a_while():
        wait_for(copying(shift_api, mid), 120, "the copy to make progress")
        replica.execute("STOP SLAVE SQL_THREAD")
        try:
            wait_for(lambda: log_path.exists() and "Waiting" in log_path.read_text(), 60, "pt-osc to wait")
            before = float(shift_api.migration(mid)["copy_percentage"])
            import time

            time.sleep(3)  # three times the max lag: pt-osc must not copy meanwhile
            assert float(shift_api.migration(mid)["copy_percentage"]) == before
            assert shift_api.migration(mid)["status"] == Status.COPY_IN_PROGRESS
        finally:
            replica.execute("START SLAVE SQL_THREAD")

    stopper = Background(stop_replica_for_a_while)
    stopper.start()
    run = run_step(conf)
    stopper.join_checked(timeout=150)
    assert task_states(run)[COPY_TASK] == "success"
    assert shift_api.migration(mid)["status"] == Status.AWAITING_RENAME
    assert "Replica" in log_path.read_text()
    rename_and_check(shift_api, source, database, mid, writer)
    replica.wait_replica_caught_up(source)
    for db, table in ((database, "t"), (database, "audit")):
        assert content_checksum(replica, db, table) == content_checksum(source, db, table)


# -- (e) kill -9 of the rename between sub-steps --------------------------------------------------

@pytest.mark.parametrize("substep", ["swap", "final_insert"])
def test_kill_9_between_rename_substeps_then_retry_completes_once(fault_env, shift_api, proxy, primary, database,
                                                                 tmp_path, substep):
    """The sub-step acted on the database; the state-file write recording it is held; the task is killed."""
    fault_env()
    prepare_table(primary, database, 5000)
    conf = claimed_copy(shift_api, database)
    mid = conf["id"]
    writer = BackgroundWriter(primary, database, "t").start()
    run = run_step(conf)
    assert task_states(run)[COPY_TASK] == "success"
    writer.stop()
    original = columns_of(primary, database, "t")

    assert shift_api.human("rename", mid).status_code == 200
    rename_conf = shift_api.claim(mid)
    proxy.hold(f"rename.{substep}")
    worker = spawn_migration_run(rename_conf, tmp_path / "worker")
    try:
        assert proxy.held.wait(120), "the rename never reached the held state-file write"
    finally:
        kill_group(worker)
    proxy.release()
    state = shift_api.state(mid)
    assert f"rename.{substep}" not in state.steps_done and state.old_table
    migration = shift_api.migration(mid)
    assert migration["status"] == Status.RENAME_IN_PROGRESS and not migration["staged"], migration
    assert "extra" in columns_of(primary, database, "t")  # the swap had happened
    if substep == "final_insert":
        assert primary.query(f"SELECT COUNT(*) FROM {q(database)}.audit")[0][0] == 1

    # Airflow retries the task (clear, or its own retry): it continues where the dead one stopped.
    run = run_step(rename_conf)
    assert task_states(run)["rename"] == "success", task_states(run)
    assert shift_api.migration(mid)["status"] == Status.COMPLETED
    state = shift_api.state(mid)
    assert state.retired_to == f"{PENDING}.{state.old_table}"
    assert content_checksum(primary, database, "t", original) == content_checksum(primary, PENDING, state.old_table,
                                                                                  original)
    assert writer.missing_rows() == set()
    assert triggers_on(primary, database) == [] and sorted(tables_in(primary, database)) == ["audit", "t"]
    assert primary.query(f"SELECT note FROM {q(database)}.audit") == [("t altered",)]  # exactly once
