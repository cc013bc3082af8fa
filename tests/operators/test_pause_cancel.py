"""Pause, resume, cancel, stop file and kill -9 of a running copy, end to end on the real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import psutil

from shift_provider.codes import Status
from tests.operators.test_copy import (
    COPY_DAG,
    Background,
    claim,
    copying,
    local_log,
    shift_log,
    start_copy,
    state_of,
    when,
)
from tests.operators.test_copy import copy_env  # noqa: F401 - fixture
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


def test_pause_mid_copy_then_resume_copies_again_correctly(copy_env, shift_api, primary, database):
    """Pause: the copy stops pt-osc, claims the pause, moves to 12 and waits deferred; resume: it copies again."""
    create_sample_table(primary, database, "t", ROWS)
    conf = start_copy(shift_api, database, "t")
    mid = conf["id"]
    writer = BackgroundWriter(primary, database, "t").start()
    seen: dict = {}

    def pause_then_resume():
        when(copying(shift_api, mid))
        assert shift_api.human("pause", mid).status_code == 200
        when(lambda: shift_api.migration(mid)["status"] == Status.PAUSED, timeout=60)
        # Not green while paused: deferred (dag.test() runs the trigger inline and may show it queued).
        seen["task_state"] = when(lambda: copy_ti_state() in ("deferred", "queued") and copy_ti_state(), timeout=30)
        seen["migration"] = shift_api.migration(mid)
        seen["outcome"] = live_xcom("copy", "copy_outcome")
        seen["progress_line"] = live_xcom("copy", "progress_line")
        seen["eta"] = live_xcom("copy", "eta_seconds")
        seen["state"] = state_of(shift_api, mid).copy_status
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
    # While paused: deferred (not green), 12, pt-osc gone, state kept, the XComs say where it stopped.
    assert seen["task_state"] in ("deferred", "queued"), seen["task_state"]
    paused = seen["migration"]
    assert paused["status"] == Status.PAUSED and not paused["staged"] and paused["run_host"] is None
    paused_at = float(paused["copy_percentage"])
    assert 0 < paused_at < 100
    assert seen["outcome"] == "stopped:paused" and seen["eta"] is None
    assert seen["progress_line"] == f"copy stopped (paused) at {int(paused_at)}%; the next attempt copies again from 0%"
    assert seen["state"] == "stopped" and not seen["ptosc"]
    assert "stopping pt-osc: shift moved migration" in local_log(copy_env, mid)

    # Resumed in the same task: it cleaned up the partial attempt and copied again.
    assert task_states(run) == {"copy": "success"}
    assert shift_api.migration(mid)["status"] == Status.AWAITING_RENAME
    # From the moment the resumed copy pinned its host, shift never showed the old attempt's percentage.
    values = seen["percentages"].values
    assert values and values[0] < paused_at, (paused_at, values)
    values = xcoms(run)["copy"]
    assert values["copy_percentage"] == 100 and values["eta_seconds"] == 0
    assert values["progress_line"] == f"copy done: 100% of `{database}`.`t` copied into `_t_new_{mid}`"
    assert values["copy_progress_history"][-1] == 100
    assert float(shift_api.migration(mid)["copy_percentage"]) == 100
    log = local_log(copy_env, mid)
    assert "an earlier copy attempt left triggers" in log and "has no --resume" in log
    assert "has triggers" not in log
    assert state_of(shift_api, mid).copy_attempts == 2
    assert shift_log(shift_api, mid) == log
    assert_swap_matches(primary, database, "t", writer, mid)


def test_cancel_mid_copy_removes_triggers_and_shadow_table(copy_env, shift_api, primary, database):
    create_sample_table(primary, database, "t", ROWS)
    conf = start_copy(shift_api, database, "t")
    mid = conf["id"]
    canceler = Background(lambda: (when(copying(shift_api, mid)), shift_api.human("cancel", mid))[1])
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
    run = run_dag("shift_test_pause", claim(shift_api, paused["id"]))
    assert task_states(run) == {"pause": "success"}
    assert shift_api.migration(paused["id"])["status"] == Status.PAUSED

    canceled = shift_api.create("ALTER TABLE t ADD COLUMN extra INT", database=database)
    shift_api.drive_to_start(canceled["id"])
    assert shift_api.human("cancel", canceled["id"]).status_code == 200
    run = run_dag("shift_test_cancel", claim(shift_api, canceled["id"]))
    assert task_states(run) == {"cancel": "success"}
    assert tables_in(primary, database) == ["t"] and triggers_on(primary, database) == []


def test_stop_file_stops_the_copy_and_offers_the_migration_back(copy_env, shift_api, primary, database):
    create_sample_table(primary, database, "t", ROWS)
    conf = start_copy(shift_api, database, "t")
    mid = conf["id"]
    stopper = Background(lambda: (when(copying(shift_api, mid)), open(copy_env.stop_file_path, "w").close()))
    stopper.start()
    run = run_dag(COPY_DAG, conf)
    stopper.join_checked()
    assert task_states(run) == {"copy": "skipped"}  # handed back: not green, nothing copied
    assert xcoms(run)["copy"]["copy_outcome"] == "stopped:stop_file"
    migration = shift_api.migration(mid)
    assert migration["status"] == Status.COPY_IN_PROGRESS and migration["staged"] and migration["run_host"] is None
    assert "offered back" in shift_log(shift_api, mid)


def test_kill_9_of_the_task_leaves_no_pt_osc_and_the_copy_resumes(copy_env, shift_api, primary, database, tmp_path):
    create_sample_table(primary, database, "t", ROWS)
    conf = start_copy(shift_api, database, "t")
    mid = conf["id"]
    writer = BackgroundWriter(primary, database, "t").start()
    airflow = subprocess.Popen([os.path.join(REPO, ".venv/bin/airflow"), "dags", "test", COPY_DAG, "-c",
                                json.dumps(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, env=private_airflow_env(tmp_path / "worker"))
    try:
        when(copying(shift_api, mid), timeout=120)

        def ptosc_processes():
            return [p for p in psutil.Process(airflow.pid).children(recursive=True)
                    if "pt-online-schema-change" in " ".join(p.cmdline())]

        ptosc = when(ptosc_processes, timeout=10)[0]
        task_process = psutil.Process(ptosc.ppid())
        assert ptosc.pid == os.getpgid(ptosc.pid)  # its own process group
        task_process.send_signal(signal.SIGKILL)  # on_kill cannot run
        gone, alive = psutil.wait_procs([ptosc], timeout=10)
        assert not alive, "pt-osc outlived the killed task"
    finally:
        try:
            os.killpg(airflow.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        airflow.wait(timeout=30)
    migration = shift_api.migration(mid)
    assert migration["status"] == Status.COPY_IN_PROGRESS and migration["run_host"]  # still pinned: it died
    assert state_of(shift_api, mid).copy_status == "running"

    # The runner runs the copy again (Airflow's retry, or a re-claim): it cleans up and copies anew.
    run = run_dag(COPY_DAG, conf)
    assert task_states(run) == {"copy": "success"}
    assert shift_api.migration(mid)["status"] == Status.AWAITING_RENAME
    log = local_log(copy_env, mid)
    assert "an earlier copy attempt left triggers" in log
    assert_swap_matches(primary, database, "t", writer, mid)


def test_a_copy_counts_as_released_when_unpinned_stopped_or_silent_too_long():
    from datetime import datetime, timedelta, timezone

    from shift_provider.models import Migration
    from shift_provider.operators.pause import copy_release_reason
    from shift_provider.state_file import MigrationState

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
        when(copying(shift_api, mid), timeout=120)
        assert shift_api.migration(mid)["run_host"]  # the copy holds it
        assert shift_api.human("pause", mid).status_code == 200
        when(lambda: shift_api.migration(mid)["status"] == Status.PAUSED, timeout=60)
        assert airflow.poll() is None  # the task waits (deferred) for a resume or cancel, it did not end
    finally:
        try:
            os.killpg(airflow.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        airflow.wait(timeout=30)
    migration = shift_api.migration(mid)
    assert migration["status"] == Status.PAUSED and migration["run_host"] is None
    assert state_of(shift_api, mid).copy_status == "stopped"
    assert triggers_on(primary, database, "t") and f"_t_new_{mid}" in tables_in(primary, database)
