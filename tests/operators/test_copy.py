"""CopyOperator on real MariaDB, the real pt-osc and the real shift API, run through dag.test()."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from shift_provider.contract.codes import Status
from tests.support.faults import kill_group
from tests.support.polling import wait_for
from tests.support.airflow import run_dag, task_states, xcoms, private_airflow_env
from tests.support.load import RunningThreads
from tests.support.tables import BackgroundWriter, columns_of, content_checksum, create_sample_table, triggers_on

COPY_DAG = "shift_test_copy"
# Small fixed chunks with a pause between them: a few seconds of copy, several progress lines.
SLOW_COPY = ["--chunk-size=500", "--chunk-time=0", "--sleep=0.05"]


def start_copy(shift_api, database: str, table: str, ddl: str | None = None, **custom) -> dict:
    """Create a long ALTER, drive it to 3 (copy in progress) and claim it like the runner; the conf."""
    custom.setdefault("recursion_method", "none")
    migration = shift_api.create(ddl or f"ALTER TABLE {table} ADD COLUMN extra INT NOT NULL DEFAULT 7",
                                 database=database, custom_options=custom)
    shift_api.drive_to_start(migration["id"])
    return shift_api.claim(migration["id"])


def local_log(settings, migration_id: int) -> str:
    return (Path(settings.log_dir) / f"id-{migration_id}" / "ptosc-output.log").read_text()


class Background(threading.Thread):
    """Run a test action (pause, cancel, stop file, ...) while dag.test() runs in the main thread."""

    def __init__(self, action) -> None:
        super().__init__(daemon=True)
        self.action, self.error, self.result = action, None, None

    def run(self) -> None:
        try:
            self.result = self.action()
        except BaseException as exc:  # re-raised by join_checked in the test thread
            self.error = exc

    def join_checked(self, timeout: float = 60):
        self.join(timeout)
        assert not self.is_alive(), "background action did not finish"
        if self.error:
            raise self.error
        return self.result


def copying(shift_api, migration_id: int, above: float = 0):
    """True once shift shows a copy percentage above ``above`` (pt-osc is past its setup)."""
    return lambda: (shift_api.migration(migration_id).get("copy_percentage") or 0) > above


@pytest.fixture
def copy_env(airflow_home, shift_settings, shift_api, primary, database, ptosc):
    """Settings whose pt-osc copies slowly enough to be watched (and paused, canceled, killed)."""
    settings = shift_settings(ptosc_extra_args=SLOW_COPY, pt_osc_path=ptosc[0])
    return settings


def test_copy_under_writes_leaves_shadow_and_triggers_and_matches_after_swap(copy_env, shift_api, primary,
                                                                           database):
    settings = copy_env
    create_sample_table(primary, database, "t", 20000)
    conf = start_copy(shift_api, database, "t")
    writer = BackgroundWriter(primary, database, "t").start()
    try:
        run = run_dag(COPY_DAG, conf)
    finally:
        writer.stop()
    assert task_states(run) == {"copy": "success"}
    migration = shift_api.migration(conf["id"])
    assert migration["status"] == Status.AWAITING_RENAME
    assert migration["run_host"] is None
    assert float(migration["copy_percentage"]) == 100
    assert writer.operations > 50
    assert "extra" in columns_of(primary, database, f"_t_new_{conf['id']}")
    assert sorted(triggers_on(primary, database, "t")) == [f"pt_osc_{database}_t_{x}" for x in ("del", "ins", "upd")]

    state = shift_api.state(conf["id"])
    assert state.copy_status == "succeeded" and state.new_table == f"_t_new_{conf['id']}"
    assert sorted(state.triggers) == sorted(triggers_on(primary, database, "t"))
    assert state.ptosc_version == "3.2.1" and "--execute" in state.ptosc_args
    assert not any("Sh1ft" in arg or "password" in arg for arg in state.ptosc_args)

    # The atomic swap the rename step will do; the old table keeps the writer's last word.
    original = columns_of(primary, database, "t")
    primary.execute(f"RENAME TABLE `{database}`.t TO `{database}`.t_old, "
                    f"`{database}`.`_t_new_{conf['id']}` TO `{database}`.t")
    assert content_checksum(primary, database, "t", original) == content_checksum(primary, database, "t_old",
                                                                                  original)
    assert writer.missing_rows() == set()
    assert primary.query(f"SELECT COUNT(*) FROM `{database}`.t WHERE extra <> 7")[0][0] == 0

    log = local_log(settings, conf["id"])
    assert "Copying" in log and "Successfully altered" in log
    assert shift_api.log_file(conf["id"]) == log  # everything shipped, once


def test_progress_reaches_xcom_and_shift_in_order(copy_env, shift_api, primary, database, capfd):
    create_sample_table(primary, database, "p", 30000)
    conf = start_copy(shift_api, database, "p")
    capfd.readouterr()
    run = run_dag(COPY_DAG, conf)
    # The task log: every pt-osc line once, under Airflow's timestamp only.
    ptosc_lines = [line for line in capfd.readouterr().out.splitlines() if " pt-osc std" in line]
    assert any("pt-osc stderr: Copying" in line for line in ptosc_lines)
    assert any("pt-osc stdout: Creating triggers..." in line for line in ptosc_lines)  # pt-osc stamped it
    assert all(len(re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line)) == 1 for line in ptosc_lines)
    assert task_states(run) == {"copy": "success"}
    values = xcoms(run)["copy"]
    history = values["copy_progress_history"]
    assert len(history) >= 3, history
    assert history == sorted(history) and len(set(history)) == len(history), history
    assert history[-1] == 100 and values["copy_percentage"] == 100
    # At the end the line says the copy is done, not pt-osc's last "NN% mm:ss remain".
    assert values["eta_seconds"] == 0
    assert values["progress_line"] == f"copy done: 100% of `{database}`.`p` copied into `_p_new_{conf['id']}`"
    assert values["waiting_reason"] is None
    assert values["copy_outcome"] == "copied"
    log = local_log(copy_env, conf["id"])
    percentages = [int(line.split(":")[-2].split()[-1].rstrip("%")) for line in log.splitlines()
                   if f"stderr: Copying `{database}`.`p`:" in line]
    assert len(percentages) >= 2 and percentages == sorted(percentages)
    # Every line carries a timestamp and its stream.
    assert all(line[:4] == "2026" or line[:2] == "20" for line in log.splitlines())


def live_xcom(key: str, dag_id: str = COPY_DAG):
    """The newest value of an XCom key of ``dag_id``, read while its task still runs."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            row = (session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.key == key)
                   .order_by(XComModel.timestamp.desc()).first())
            return XComModel.deserialize_value(row) if row is not None else None
    except Exception:  # SQLite busy while the task writes: ask again
        return None


def test_stopped_replica_makes_ptosc_wait_and_says_why(airflow_home, shift_settings, shift_api, cluster, ptosc):
    source, replica = cluster
    settings = shift_settings(ptosc_extra_args=SLOW_COPY, pt_osc_path=ptosc[0], host_override=source.host,
                              port_override=source.port)
    database = "lagged"
    create_sample_table(source, database, "t", 20000)
    # pt-osc finds replicas on loopback (distinct ports) through a DSN table.
    source.execute(f"CREATE TABLE `{database}`.dsns (id INT AUTO_INCREMENT PRIMARY KEY, parent_id INT NULL,"
                   " dsn VARCHAR(255) NOT NULL)",
                   f"INSERT INTO `{database}`.dsns (dsn) VALUES ('h=127.0.0.1,P={replica.port}')")
    replica.wait_replica_caught_up(source)
    replica.execute("STOP SLAVE SQL_THREAD")
    conf = start_copy(shift_api, database, "t", recursion_method=f"dsn=D={database},t=dsns",
                      max_replication_lag="1")
    log_path = Path(settings.log_dir) / f"id-{conf['id']}" / "ptosc-output.log"

    def release_replica():
        try:
            reason = wait_for(lambda: live_xcom("waiting_reason"), timeout=90, interval=0.3)
            time.sleep(2)  # pt-osc really waits: no progress while the replica is stopped
            return reason
        finally:  # never leave pt-osc waiting forever, even when the assertion fails
            replica.execute("START SLAVE SQL_THREAD")

    live_xcom("waiting_reason")  # configure the ORM mappers here, not in the thread (import lock)
    releaser = Background(release_replica)
    releaser.start()
    run = run_dag(COPY_DAG, conf)
    reason = releaser.join_checked(timeout=120)
    assert task_states(run) == {"copy": "success"}
    assert shift_api.migration(conf["id"])["status"] == Status.AWAITING_RENAME
    # pt-osc names the replica by its report host: "(1) Replica 'vm' is stopped.  Waiting."
    assert "Replica" in reason and "Waiting" in reason
    values = xcoms(run)["copy"]
    assert values["waiting_reason"] is None and "Replica" in values["last_waiting_reason"]
    assert values["copy_percentage"] == 100
    log = log_path.read_text()
    assert reason in log
    assert "pt-osc is waiting" not in log  # the task log has that; the file holds pt-osc's own lines


def test_low_max_threads_running_pauses_the_copy_under_load_instead_of_aborting_it(copy_env, shift_api, primary,
                                                                                 database):
    """max_threads_running 50 under more than 50 running threads: pt-osc waits, then copies to the end."""
    create_sample_table(primary, database, "busy", 20000)
    conf = start_copy(shift_api, database, "busy", max_threads_running="50")
    load = RunningThreads(primary, 55).start()

    def release_load():
        try:
            wait_for(lambda: load.threads_running() > 50, timeout=30)
            return wait_for(lambda: next((r for r in [live_xcom("waiting_reason") or ""]
                                      if r.startswith("Pausing because Threads_running=")), None),
                        timeout=120, interval=0.3)
        finally:  # never leave the load (and pt-osc paused behind it) in place
            load.stop()

    live_xcom("waiting_reason")  # configure the ORM mappers here, not in the thread (import lock)
    releaser = Background(release_load)
    releaser.start()
    run = run_dag(COPY_DAG, conf)
    reason = releaser.join_checked(timeout=150)
    assert task_states(run) == {"copy": "success"}
    assert shift_api.migration(conf["id"])["status"] == Status.AWAITING_RENAME
    assert int(reason.split("Threads_running=")[1].rstrip(".")) > 50
    values = xcoms(run)["copy"]
    assert values["copy_outcome"] == "copied" and values["copy_percentage"] == 100
    assert values["last_waiting_reason"].startswith("Pausing because Threads_running=")
    log = local_log(copy_env, conf["id"])
    assert "pt-osc load limits as it receives them: max-load=Threads_running=50, " \
           "critical-load=Threads_running=80, max-lag=1" in log
    assert reason in log and "exceeds its critical threshold" not in log


def test_ptosc_failure_becomes_a_resumable_error_with_the_tools_message(copy_env, shift_api, primary, database):
    primary.execute(f"CREATE TABLE `{database}`.nokey (a INT, b INT)",
                    f"INSERT INTO `{database}`.nokey VALUES (1, 2), (3, 4)")
    conf = start_copy(shift_api, database, "nokey")
    run = run_dag(COPY_DAG, conf)
    assert task_states(run) == {"copy": "failed"}
    migration = shift_api.migration(conf["id"])
    assert migration["status"] == Status.ERROR and migration["run_host"] is None
    assert "pt-online-schema-change exited" in migration["error_message"]
    assert "PRIMARY KEY" in migration["error_message"] or "unique" in migration["error_message"].lower()
    assert shift_api.state(conf["id"]).copy_status == "failed"
    assert "PRIMARY" in shift_api.log_file(conf["id"]) or "unique" in shift_api.log_file(conf["id"]).lower()


def test_sigterm_kills_ptosc_and_offers_the_migration_back(copy_env, shift_api, primary, database, tmp_path):
    import json
    import signal
    import subprocess

    import psutil

    create_sample_table(primary, database, "t", 40000)
    conf = start_copy(shift_api, database, "t")
    mid = conf["id"]
    repo = Path(__file__).resolve().parents[2]
    airflow = subprocess.Popen([str(repo / ".venv/bin/airflow"), "dags", "test", COPY_DAG, "-c", json.dumps(conf)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                               env=private_airflow_env(tmp_path / "worker"))
    try:
        wait_for(copying(shift_api, mid), timeout=120)
        ptosc_process = wait_for(lambda: [p for p in psutil.Process(airflow.pid).children(recursive=True)
                                      if "pt-online-schema-change" in " ".join(p.cmdline())], timeout=10)[0]
        psutil.Process(ptosc_process.ppid()).send_signal(signal.SIGTERM)  # what "mark failed" sends: on_kill
        gone, alive = psutil.wait_procs([ptosc_process], timeout=10)
        assert not alive
        wait_for(lambda: shift_api.migration(mid)["staged"], timeout=30)
        airflow.wait(timeout=60)
    finally:
        kill_group(airflow)  # SIGKILL of its whole group, then reaped
    migration = shift_api.migration(mid)
    assert migration["status"] == Status.COPY_IN_PROGRESS and migration["staged"]  # offered, not errored
    assert migration["run_host"] is None
    assert shift_api.state(mid).copy_status == "killed"
    assert "offering the migration back" in shift_api.log_file(mid)
