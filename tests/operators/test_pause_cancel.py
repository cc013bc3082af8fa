"""Pause, resume, cancel, stop file and kill -9 of a running copy, end to end on the real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import psutil

from shift_provider.contract.codes import Status
from tests.operators.test_copy import COPY_DAG, Background, copying, local_log, start_copy
from tests.operators.test_copy import copy_env  # noqa: F401 - fixture
from tests.support.faults import kill_group
from tests.support.polling import wait_for
from tests.support.airflow import run_dag, task_states, xcoms, private_airflow_env
from tests.support.tables import (
    BackgroundWriter,
    columns_of,
    content_checksum,
    create_sample_table,
    tables_in,
    triggers_on,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROWS = 40000


def assert_swap_matches(primary, database, table, writer, mid):
    """Stop the writer, do the rename step's atomic swap, compare the original columns."""
    writer.stop()
    original = columns_of(primary, database, table)
    primary.execute(f"RENAME TABLE `{database}`.`{table}` TO `{database}`.`{table}_old`, "
                    f"`{database}`.`_{table}_new_{mid}` TO `{database}`.`{table}`")
    assert content_checksum(primary, database, table, original) == \
        content_checksum(primary, database, f"{table}_old", original)
    assert writer.missing_rows() == set()
    assert "extra" in columns_of(primary, database, table)


class PinnedPercentages(Background):
    """shift's copy_percentage, sampled while a copy has its run_host pinned (in order of observation)."""

    def __init__(self, shift_api, migration_id: int) -> None:
        import threading

        self.values: list[float] = []
        self._quit = threading.Event()

        def sample():
            while not self._quit.is_set():
                migration = shift_api.migration(migration_id)
                if migration["run_host"] and migration["copy_percentage"] is not None:
                    self.values.append(float(migration["copy_percentage"]))
                self._quit.wait(0.05)

        super().__init__(sample)

    def start(self) -> PinnedPercentages:
        super().start()
        return self

    def stop(self) -> None:
        self._quit.set()
        self.join_checked(timeout=30)


def live_xcom(task_id: str, key: str):
    """The newest value of an XCom of a task of the copy test DAG, read while its run goes on."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (session.query(XComModel).filter(XComModel.dag_id == COPY_DAG, XComModel.task_id == task_id,
                                                XComModel.key == key)
               .order_by(XComModel.timestamp.desc()).first())
        return None if row is None else XComModel.deserialize_value(row)


def copy_ti_state() -> str | None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (session.query(TaskInstance).filter(TaskInstance.dag_id == COPY_DAG)
              .order_by(TaskInstance.start_date.desc()).first())
        return None if ti is None else str(ti.state)


def resumed_from_checkpoint(values: dict, log: str, total_rows: int) -> dict:
    """The resumed attempt started after a boundary, not at row 1, and copied only what remained."""
    start = values["copy_resume"]
    assert start["resumed"] is True and start["boundary"] and start["rows_copied_before"] > 0, start
    assert 0 < start["percentage"] < 100
    # Its progress went on from the checkpoint's percentage, never back to 0.
    assert values["copy_progress_history"][0] == start["percentage"]
    assert min(values["copy_progress_history"]) >= start["percentage"]
    # It copied the rows after the boundary, not the table again: at most what remained plus two chunks
    # (SLOW_COPY's 500 rows). Rows already in the shadow table (the writer's, through the triggers, or
    # copied after the last synced checkpoint of a killed copy) are skipped by INSERT IGNORE, not counted.
    copied = values["rows_copied_this_run"]
    before = start["rows_copied_before"]
    assert 0 < copied <= total_rows - before + 2 * 500, (start, copied)
    assert f"resuming the copy after boundary {start['boundary']}" in log
    assert "an earlier copy attempt left triggers" not in log and "copying again from the start" not in log
    assert "Reusing new table" in log and "Reusing triggers" in log
    return start


def test_pause_mid_copy_then_resume_continues_from_the_checkpoint(copy_env, shift_api, primary, database):
    """Pause: the copy stops pt-osc, claims the pause, moves to 12 and waits deferred; resume: the same task
    goes on after the checkpoint's boundary."""
    create_sample_table(primary, database, "t", ROWS)
    conf = start_copy(shift_api, database, "t")
    mid = conf["id"]
    writer = BackgroundWriter(primary, database, "t").start()
    seen: dict = {}

    def pause_then_resume():
        wait_for(copying(shift_api, mid, above=45))
        assert shift_api.human("pause", mid).status_code == 200
        wait_for(lambda: shift_api.migration(mid)["status"] == Status.PAUSED, timeout=60)
        # Not green while paused: deferred (dag.test() runs the trigger inline and may show it queued).
        seen["task_state"] = wait_for(lambda: copy_ti_state() in ("deferred", "queued") and copy_ti_state(), timeout=30)
        seen["migration"] = shift_api.migration(mid)
        for key in ("copy_outcome", "progress_line", "eta_seconds", "waiting_reason", "copy_percentage",
                    "rows_copied_this_run"):
            seen[key] = live_xcom("copy", key)
        seen["state"] = shift_api.state(mid)
        seen["ptosc"] = [p for p in psutil.process_iter(["cmdline"]) if f"D={database}" in " ".join(p.info["cmdline"] or [])]
        seen["percentages"] = PinnedPercentages(shift_api, mid).start()
        return shift_api.human("resume", mid)

    def dba():
        try:
            return pause_then_resume()
        except BaseException:  # end the copy's wait, or dag.test() would wait for the resume forever
            shift_api.request("POST", "migrations/fail", {"id": mid, "error_message": "test failed"})
            raise

    human = Background(dba)
    human.start()
    try:
        run = run_dag(COPY_DAG, conf)
    finally:
        if "percentages" in seen:
            seen["percentages"].stop()
    assert human.join_checked().status_code == 200
    # While paused: deferred (not green), 12, pt-osc gone, state and checkpoint kept, the XComs say where
    # it stopped and where the next attempt resumes.
    assert seen["task_state"] in ("deferred", "queued"), seen["task_state"]
    paused = seen["migration"]
    assert paused["status"] == Status.PAUSED and not paused["staged"] and paused["run_host"] is None
    paused_at = seen["copy_percentage"]
    assert 0 < paused_at < 100 and float(paused["copy_percentage"]) == paused_at
    assert seen["copy_outcome"] == "stopped:paused"
    assert seen["eta_seconds"] is None and seen["waiting_reason"] is None  # nothing copies any more
    checkpoint = seen["state"].checkpoint
    assert seen["progress_line"] == (f"copy stopped (paused) at {paused_at}%; "
                                     f"the next attempt resumes after boundary {checkpoint['upper']}")
    assert seen["state"].copy_status == "stopped" and not seen["ptosc"]
    assert checkpoint["resumable"] and checkpoint["new_table"] == f"_t_new_{mid}" and checkpoint["rows_copied"] > 0
    assert seen["rows_copied_this_run"] == checkpoint["rows_copied"]
    assert "stopping pt-osc: shift moved migration" in local_log(copy_env, mid)

    # Resumed in the same task: it proved the checkpoint and went on after its boundary.
    assert task_states(run) == {"copy": "success"}
    assert shift_api.migration(mid)["status"] == Status.AWAITING_RENAME
    pinned = seen["percentages"].values
    values = xcoms(run)["copy"]
    start = resumed_from_checkpoint(values, local_log(copy_env, mid), ROWS)
    # shift's percentage went on from the checkpoint's (at most the paused one), never back to 0.
    assert pinned and pinned == sorted(pinned) and pinned[0] > 0, (start, pinned)
    assert abs(start["percentage"] - paused_at) <= 1, (start, paused_at)
    assert values["copy_percentage"] == 100 and values["eta_seconds"] == 0
    assert values["progress_line"] == f"copy done: 100% of `{database}`.`t` copied into `_t_new_{mid}`"
    assert values["copy_progress_history"][-1] == 100
    assert float(shift_api.migration(mid)["copy_percentage"]) == 100
    log = local_log(copy_env, mid)
    assert "has triggers" not in log
    assert shift_api.state(mid).copy_attempts == 2
    assert shift_api.log_file(mid) == log
    assert_swap_matches(primary, database, "t", writer, mid)


def test_cancel_mid_copy_removes_triggers_and_shadow_table(copy_env, shift_api, primary, database):
    create_sample_table(primary, database, "t", ROWS)
    conf = start_copy(shift_api, database, "t")
    mid = conf["id"]
    canceler = Background(lambda: (wait_for(copying(shift_api, mid)), shift_api.human("cancel", mid))[1])
    canceler.start()
    run = run_dag(COPY_DAG, conf)
    assert canceler.join_checked().status_code == 200
    # The copy claimed the cancel and cleaned up itself; it copied nothing for a rename: skipped.
    assert task_states(run) == {"copy": "skipped"}
    assert xcoms(run)["copy"]["copy_outcome"] == "stopped:canceled"
    assert triggers_on(primary, database) == []
    assert tables_in(primary, database) == ["t"]
    assert columns_of(primary, database, "t") == ["id", "name", "amount", "created"]
    assert any(name.endswith(f"_t_new_{mid}") for name in tables_in(primary, "_pending_drops"))
    migration = shift_api.migration(mid)
    assert migration["status"] == Status.CANCELED and migration["run_host"] is None and not migration["staged"]
    # Idempotent: the cancel step run again on that claim finds nothing left to do.
    cancel_conf = {**conf, "status": int(Status.CANCELED), "staged": False}
    run = run_dag("shift_test_cancel", cancel_conf)
    assert task_states(run) == {"cancel": "success"}
    assert tables_in(primary, database) == ["t"] and triggers_on(primary, database) == []


def test_pause_and_cancel_without_a_running_copy(copy_env, shift_api, primary, database):
    create_sample_table(primary, database, "t", 100)
    paused = shift_api.create("ALTER TABLE t ADD COLUMN extra INT", database=database)
    shift_api.drive_to_start(paused["id"])
    assert shift_api.human("pause", paused["id"]).status_code == 200
    run = run_dag("shift_test_pause", shift_api.claim(paused["id"]))
    assert task_states(run) == {"pause": "success"}
    assert shift_api.migration(paused["id"])["status"] == Status.PAUSED

    canceled = shift_api.create("ALTER TABLE t ADD COLUMN extra INT", database=database)
    shift_api.drive_to_start(canceled["id"])
    assert shift_api.human("cancel", canceled["id"]).status_code == 200
    run = run_dag("shift_test_cancel", shift_api.claim(canceled["id"]))
    assert task_states(run) == {"cancel": "success"}
    assert tables_in(primary, database) == ["t"] and triggers_on(primary, database) == []


def test_stop_file_stops_the_copy_offers_it_back_and_the_next_copy_resumes(copy_env, shift_api, primary, database):
    create_sample_table(primary, database, "t", ROWS)
    conf = start_copy(shift_api, database, "t")
    mid = conf["id"]
    writer = BackgroundWriter(primary, database, "t").start()
    stopper = Background(lambda: (wait_for(copying(shift_api, mid, above=30)), open(copy_env.stop_file_path, "w").close()))
    stopper.start()
    run = run_dag(COPY_DAG, conf)
    stopper.join_checked()
    assert task_states(run) == {"copy": "skipped"}  # handed back: not green, nothing copied
    assert xcoms(run)["copy"]["copy_outcome"] == "stopped:stop_file"
    migration = shift_api.migration(mid)
    assert migration["status"] == Status.COPY_IN_PROGRESS and migration["staged"] and migration["run_host"] is None
    assert "offered back" in shift_api.log_file(mid)
    assert shift_api.state(mid).checkpoint["resumable"]

    # The stop file goes; the runner claims the offered migration and resumes after the checkpoint.
    os.remove(copy_env.stop_file_path)
    run = run_dag(COPY_DAG, shift_api.claim(mid))
    assert task_states(run) == {"copy": "success"}
    assert shift_api.migration(mid)["status"] == Status.AWAITING_RENAME
    resumed_from_checkpoint(xcoms(run)["copy"], local_log(copy_env, mid), ROWS)
    assert_swap_matches(primary, database, "t", writer, mid)


def test_kill_9_of_the_task_leaves_no_pt_osc_and_the_copy_resumes(copy_env, shift_api, primary, database, tmp_path):
    create_sample_table(primary, database, "t", ROWS)
    conf = start_copy(shift_api, database, "t")
    mid = conf["id"]
    writer = BackgroundWriter(primary, database, "t").start()
    airflow = subprocess.Popen([os.path.join(REPO, ".venv/bin/airflow"), "dags", "test", COPY_DAG, "-c",
                                json.dumps(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, env=private_airflow_env(tmp_path / "worker"))
    try:
        # Past the first state syncs: shift's state file holds a checkpoint to resume from.
        wait_for(copying(shift_api, mid, above=30), timeout=120)
        wait_for(lambda: shift_api.state(mid).checkpoint.get("resumable"), timeout=30)

        def ptosc_processes():
            return [p for p in psutil.Process(airflow.pid).children(recursive=True)
                    if "pt-online-schema-change" in " ".join(p.cmdline())]

        ptosc = wait_for(ptosc_processes, timeout=10)[0]
        task_process = psutil.Process(ptosc.ppid())
        assert ptosc.pid == os.getpgid(ptosc.pid)  # its own process group
        task_process.send_signal(signal.SIGKILL)  # on_kill cannot run
        gone, alive = psutil.wait_procs([ptosc], timeout=10)
        assert not alive, "pt-osc outlived the killed task"
    finally:
        kill_group(airflow)  # SIGKILL of its whole group, then reaped
    migration = shift_api.migration(mid)
    assert migration["status"] == Status.COPY_IN_PROGRESS and migration["run_host"]  # still pinned: it died
    assert shift_api.state(mid).copy_status == "running"

    # The runner runs the copy again (Airflow's retry, or a re-claim): it resumes from the checkpoint
    # the dead task last synced to shift's state file.
    assert shift_api.state(mid).checkpoint["resumable"]
    run = run_dag(COPY_DAG, conf)
    assert task_states(run) == {"copy": "success"}
    assert shift_api.migration(mid)["status"] == Status.AWAITING_RENAME
    resumed_from_checkpoint(xcoms(run)["copy"], local_log(copy_env, mid), ROWS)
    assert_swap_matches(primary, database, "t", writer, mid)


def test_a_copy_counts_as_released_when_unpinned_stopped_or_silent_too_long():
    from datetime import datetime, timedelta, timezone

    from shift_provider.contract.models import Migration
    from shift_provider.operators.copy_release import copy_release_reason
    from shift_provider.contract.state_file import MigrationState

    def migration(run_host):
        return Migration.from_payload({"id": 1, "database": "d", "table": "t", "status": 11, "host": "h",
                                       "port": 3306, "run_host": run_host, "ddl_statement": "ALTER TABLE t ADD c INT"})

    def state(status, age):
        updated = (datetime.now(timezone.utc) - timedelta(seconds=age)).isoformat(timespec="seconds")
        return MigrationState(migration_id=1, copy_status=status, updated_at=updated)

    assert "unpinned" in copy_release_reason(migration(None), state("running", 0), 30)
    assert "stopped" in copy_release_reason(migration("w1"), state("stopped", 0), 30)
    assert copy_release_reason(migration("w1"), state("running", 5), 30) is None
    assert "gone" in copy_release_reason(migration("w1"), state("running", 120), 30)


def test_a_copy_in_another_process_pauses_itself_and_waits(copy_env, shift_api, primary, database, tmp_path):
    """The copy runs in its own `airflow dags test` process; a pause stops it there, it moves to 12 and waits."""
    create_sample_table(primary, database, "t", ROWS)
    conf = start_copy(shift_api, database, "t")
    mid = conf["id"]
    airflow = subprocess.Popen([os.path.join(REPO, ".venv/bin/airflow"), "dags", "test", COPY_DAG, "-c",
                                json.dumps(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, env=private_airflow_env(tmp_path / "worker"))
    try:
        wait_for(copying(shift_api, mid), timeout=120)
        assert shift_api.migration(mid)["run_host"]  # the copy holds it
        assert shift_api.human("pause", mid).status_code == 200
        wait_for(lambda: shift_api.migration(mid)["status"] == Status.PAUSED, timeout=60)
        assert airflow.poll() is None  # the task waits (deferred) for a resume or cancel, it did not end
    finally:
        kill_group(airflow)  # SIGKILL of its whole group, then reaped
    migration = shift_api.migration(mid)
    assert migration["status"] == Status.PAUSED and migration["run_host"] is None
    assert shift_api.state(mid).copy_status == "stopped"
    assert triggers_on(primary, database, "t") and f"_t_new_{mid}" in tables_in(primary, database)
