"""The runner's own DDL on a live table waits a bounded time for its lock, never as long as a reader.

A reader holding ``START TRANSACTION; SELECT ... FROM t`` keeps a shared metadata lock
on ``t``; any DDL then waits, and the application's writes queue behind the waiting
DDL. With the bound, they queue at most that long; the step gives up with nothing
changed, and a retry after the reader ends finishes it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from shift_provider.mysql.bounded_ddl import ErrorKind, LockBound, classify
from shift_provider.contract.codes import Status
from tests.operators.test_copy import COPY_DAG, start_copy
from tests.operators.test_copy import copy_env  # noqa: F401 - fixture
from tests.support.airflow import run_dag, task_states
from tests.support.tables import BackgroundWriter, columns_of, create_sample_table, tables_in, triggers_on

BOUND = LockBound(timeout=1, retries=2)
READER_SECONDS = 60  # what the reader would hold without the bound
MARGIN = 3.0  # generous: a loaded 2-core machine, the writer's own round trips


class Reader(threading.Thread):
    """``START TRANSACTION; SELECT ... FROM t`` held until released (or READER_SECONDS)."""

    def __init__(self, server, database: str, table: str) -> None:
        super().__init__(daemon=True)
        self.server, self.database, self.table = server, database, table
        self.holding, self.release = threading.Event(), threading.Event()

    def run(self) -> None:
        conn = self.server.connect(self.database, autocommit=False)
        try:
            with conn.cursor() as cur:
                cur.execute("START TRANSACTION")
                cur.execute(f"SELECT id, name FROM `{self.table}` LIMIT 5")
                cur.fetchall()
                self.holding.set()
                self.release.wait(READER_SECONDS)
                cur.execute("COMMIT")
        finally:
            conn.close()


def run_behind_a_reader(primary, database: str, dag_id: str, conf: dict) -> tuple[Any, float, BackgroundWriter]:
    """Run a step's DAG while a reader holds the table's metadata lock and a writer keeps writing.

    Returns the run, how long it took, and the (still running) writer: the caller stops it.
    Asserts the application kept writing all along.
    """
    writer = BackgroundWriter(primary, database, "t").start()
    reader = Reader(primary, database, "t")
    reader.start()
    try:
        assert reader.holding.wait(10)
        time.sleep(0.5)
        baseline_ops = writer.operations
        started = time.monotonic()
        run = run_dag(dag_id, conf)
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        assert writer.operations > baseline_ops  # the application kept writing all along
    except BaseException:
        writer.stop()
        raise
    finally:
        reader.release.set()
        reader.join(10)
    return run, elapsed, writer


def test_cancel_gives_up_within_the_bound_behind_a_reader_and_a_retry_finishes(copy_env, shift_api, primary,
                                                                              database, shift_settings, ptosc):
    shift_settings(ptosc_extra_args=["--chunk-size=500"], pt_osc_path=ptosc[0],
                   rename_lock_wait_timeout=BOUND.timeout, rename_retries=BOUND.retries)
    create_sample_table(primary, database, "t", 2000)
    conf = start_copy(shift_api, database, "t")
    assert task_states(run_dag(COPY_DAG, conf)) == {"copy": "success"}
    mid = conf["id"]
    assert shift_api.migration(mid)["status"] == Status.AWAITING_RENAME
    assert len(triggers_on(primary, database, "t")) == 3
    assert shift_api.human("cancel", mid).status_code == 200
    cancel_conf = shift_api.claim(mid)

    run, elapsed, writer = run_behind_a_reader(primary, database, "shift_test_cancel", cancel_conf)
    try:
        assert task_states(run) == {"cancel": "failed"}
        # Gave up within the bound (3 attempts of 1 s, 2 pauses), far from the reader's 60 s.
        assert elapsed < BOUND.worst_case_seconds + 20, f"cancel took {elapsed:.1f}s"
        assert writer.max_latency < BOUND.timeout + MARGIN, \
            f"an application write waited {writer.max_latency:.1f}s (bound {BOUND.timeout}s)"
        # Nothing changed; the migration is still canceled, the shift log says why.
        assert len(triggers_on(primary, database, "t")) == 3
        assert shift_api.migration(mid)["status"] == Status.CANCELED
        assert "did not get its metadata lock in 3 attempt(s) of lock_wait_timeout=1s" in shift_api.log_file(mid)

        # The reader ended: a retry of the same task finishes the cleanup.
        run = run_dag("shift_test_cancel", cancel_conf)
        assert task_states(run) == {"cancel": "success"}
        assert triggers_on(primary, database) == [] and tables_in(primary, database) == ["t"]
    finally:
        writer.stop()
    assert writer.max_latency < BOUND.timeout + MARGIN
    assert writer.missing_rows() == set()


def test_one_definition_of_retryable_mysql_errors():
    import MySQLdb

    assert classify(MySQLdb.OperationalError(1205, "Lock wait timeout exceeded")) == ErrorKind.LOCK
    assert classify(MySQLdb.OperationalError(1213, "Deadlock found")) == ErrorKind.LOCK
    for code in (2002, 2006, 2013, 2055, 1927):
        assert classify(MySQLdb.OperationalError(code, "gone")) == ErrorKind.CONNECTION
    assert classify(MySQLdb.OperationalError(1054, "Unknown column")) == ErrorKind.STATEMENT
    assert classify(MySQLdb.OperationalError(4161, "Unknown data type")) == ErrorKind.STATEMENT  # MariaDB 4xxx


def test_resumed_copy_cleanup_gives_up_within_the_bound_behind_a_reader_and_a_resume_finishes(
        copy_env, shift_api, primary, database, shift_settings, ptosc):
    """The restart cleanup of a copy (an earlier attempt's triggers) is bounded like every other DDL."""
    import subprocess

    from shift_provider import ptosc as ptosc_module
    from shift_provider.hooks.cluster import ShiftClusterHook
    from shift_provider.contract.models import Migration

    settings = shift_settings(pt_osc_path=ptosc[0], rename_lock_wait_timeout=BOUND.timeout,
                              rename_retries=BOUND.retries)
    create_sample_table(primary, database, "t", 2000)
    conf = start_copy(shift_api, database, "t")
    mid = conf["id"]
    # An earlier attempt's leftovers, as a copy lost with its worker leaves them: the real pt-osc's.
    migration = Migration.from_payload(conf)
    hook = ShiftClusterHook(migration, settings)
    with hook.defaults_file() as defaults:
        command = ptosc_module.build_command(migration, settings, defaults, ptosc_module.Execution.EXECUTE)
        assert subprocess.run(command.argv, capture_output=True, timeout=120).returncode == 0
    assert len(triggers_on(primary, database, "t")) == 3

    run, elapsed, writer = run_behind_a_reader(primary, database, COPY_DAG, conf)
    try:
        assert task_states(run) == {"copy": "failed"}
        assert elapsed < BOUND.worst_case_seconds + 20, f"the copy took {elapsed:.1f}s"
        assert writer.max_latency < BOUND.timeout + MARGIN, \
            f"an application write waited {writer.max_latency:.1f}s (bound {BOUND.timeout}s)"
        migration_now = shift_api.migration(mid)
        assert migration_now["status"] == Status.ERROR  # resumable
        assert "did not get its metadata lock" in migration_now["error_message"]
        # The reader ended: a human resumes, the copy cleans up and copies again.
        assert shift_api.human("resume", mid).status_code == 200
        run = run_dag(COPY_DAG, shift_api.claim(mid))
        assert task_states(run) == {"copy": "success"}
        assert shift_api.migration(mid)["status"] == Status.AWAITING_RENAME
    finally:
        writer.stop()
    assert writer.max_latency < BOUND.timeout + MARGIN


def test_short_run_alter_gives_up_within_the_bound_behind_a_reader_and_a_retry_finishes(
        airflow_home, shift_api, primary, database, shift_settings):
    """run_ddl runs the user's ALTER on the live table: bounded like the runner's own DDL."""
    shift_settings(rename_lock_wait_timeout=BOUND.timeout, rename_retries=BOUND.retries)
    create_sample_table(primary, database, "t", 500)
    created = shift_api.create("ALTER TABLE t ADD COLUMN short_run INT NULL", database=database)
    shift_api.drive_to_start(created["id"], runtype="short")
    mid, conf = created["id"], shift_api.claim(created["id"])

    run, elapsed, writer = run_behind_a_reader(primary, database, "shift_test_run_ddl", conf)
    try:
        assert task_states(run) == {"run_ddl": "failed"}
        assert elapsed < BOUND.worst_case_seconds + 20, f"the short run took {elapsed:.1f}s"
        assert writer.max_latency < BOUND.timeout + MARGIN, \
            f"an application write waited {writer.max_latency:.1f}s (bound {BOUND.timeout}s)"
        # Nothing changed; the migration is still at copy in progress, the shift log says why.
        assert "short_run" not in columns_of(primary, database, "t")
        assert shift_api.migration(mid)["status"] == Status.COPY_IN_PROGRESS
        assert "did not get its metadata lock in 3 attempt(s) of lock_wait_timeout=1s" in shift_api.log_file(mid)

        # The reader ended: a retry of the same task (a clear in Airflow) runs the ALTER and completes.
        run = run_dag("shift_test_run_ddl", conf)
        assert task_states(run) == {"run_ddl": "success"}
        assert shift_api.migration(mid)["status"] == Status.COMPLETED
        assert "short_run" in columns_of(primary, database, "t")
    finally:
        writer.stop()
    assert writer.missing_rows() == set()
