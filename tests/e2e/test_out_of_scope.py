"""Migrations that reach beyond their own table, filed through the reference API and claimed by the sensor DAG.

Issue 20 (engine changes, CREATE ... SELECT, DISCARD TABLESPACE, a negative id) and issue 14
cases 1 and 5 (EXCHANGE/CONVERT PARTITION wiping other tables, a recursion_method that
sends the runner's login to another server). Each asserts the safe outcome on the real
servers: the other tables' rows, the binlog, the general logs, the API's status and message.
The validation layer's full corpus is ``tests/operators/test_admission.py``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid

import pytest

from tests.support.airflow import xcoms
from tests.support.e2e import claim_and_run
from tests.support.hostile import BrokenUpstream, RootServer, RunnerTrace, stage_raw
from tests.support.mariadb import TEST_USER, MariaDBServer
from tests.support.shift_api import shift_client
from tests.support.tables import columns_of, content_checksum, create_sample_table, q, tables_in, \
    triggers_on


@pytest.fixture
def e2e(airflow_home, shift_api, shift_settings, primary, database):
    shift_settings()
    return shift_api


@pytest.fixture
def trace(primary):
    """``trace()`` starts watching the primary's general log and binlog (after the test's own setup,
    which connects as the runner's user); checks read through ``root`` (root over the socket)."""
    tracers = []

    def start() -> RunnerTrace:
        tracer = RunnerTrace(RootServer(primary)).start()
        tracer.binlog_start = tracer.root.master_position()
        tracers.append(tracer)
        return tracer

    yield start
    for tracer in tracers:
        tracer.stop()


def human(api, *args: str) -> None:
    out = shift_client(*args, url=api.url)
    assert out.returncode == 0, out.stderr


def refused(api, mid: int, message: str) -> dict:
    migration = api.migration(mid)
    assert migration["status"] == 10 and migration["staged"] is False, migration
    assert message in (migration["error_message"] or ""), migration["error_message"]
    return migration


def engine_of(primary, database: str, table: str) -> str:
    return primary.query("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
                         (database, table))[0][0]


# --- issue 20.1: engine changes ---------------------------------------------------------------

def test_engine_change_is_not_instant_and_is_copied_by_ptosc(e2e, primary, database):
    """MariaDB accepts ENGINE=Aria with ALGORITHM=INSTANT and copies: prepare must not call it instant."""
    create_sample_table(primary, database, "t", 3000)
    before = content_checksum(primary, database, "t")
    mid = e2e.create(ddl="ALTER TABLE t ENGINE=Aria", database=database)["id"]
    [(_, prepare)] = claim_and_run()
    detect = xcoms(prepare)["prepare.detect_instant_ddl"]
    assert detect["instant_ddl"] is False and "ENGINE rebuilds the table" in detect["instant_ddl_reason"], detect
    human(e2e, "approve", str(mid), "--runtype", "long")
    human(e2e, "start", str(mid))
    [(_, copy)] = claim_and_run()
    assert xcoms(copy)["copy"]["copy_outcome"] == "copied"  # pt-osc, not an in-place "instant"
    human(e2e, "rename", str(mid))
    [(_, rename)] = claim_and_run()
    assert "instant_ddl_outcome" not in xcoms(rename).get("rename", {})
    assert e2e.migration(mid)["status"] == 8
    assert engine_of(primary, database, "t") == "Aria" and content_checksum(primary, database, "t") == before
    assert triggers_on(primary, database) == []


def test_blackhole_is_refused_and_the_table_keeps_its_rows(e2e, primary, database, trace):
    create_sample_table(primary, database, "t", 6000)
    before = content_checksum(primary, database, "t")
    trace = trace()
    for ddl in ("ALTER TABLE t ENGINE=BLACKHOLE", "ALTER TABLE t ADD COLUMN x INT, ENGINE BLACKHOLE"):
        mid = e2e.create(ddl=ddl, database=database)["id"]
        claim_and_run()
        refused(e2e, mid, "ENGINE=BLACKHOLE is not allowed (only InnoDB, Aria, MyISAM)")
    assert trace.runner_statements_about(database) == []
    root = trace.root
    assert engine_of(root, database, "t") == "InnoDB" and content_checksum(root, database, "t") == before
    assert trace.binlog_events_about(trace.binlog_start, database) == []


# --- issue 20.2: CREATE ... SELECT --------------------------------------------------------------

def test_create_select_from_another_database_is_refused_with_nothing_in_the_binlog(e2e, primary, database, trace):
    other = f"secrets_{uuid.uuid4().hex[:8]}"
    create_sample_table(primary, other, "secrets", 300)
    trace = trace()
    try:
        cases = {f"CREATE TABLE n SELECT * FROM {other}.secrets": "CREATE ... SELECT",
                 f"CREATE TABLE n (id INT PRIMARY KEY) SELECT id FROM {other}.secrets": "CREATE ... SELECT",
                 f"CREATE TABLE n LIKE {other}.secrets": f"LIKE {other}.secrets: a copy of the definition"}
        for ddl, message in cases.items():
            mid = e2e.create(ddl=ddl, database=database)["id"]
            claim_and_run()
            refused(e2e, mid, message)
        assert trace.binlog_events_about(trace.binlog_start, database, other, "secrets") == []
        assert trace.runner_statements_about(database, other) == []
        assert tables_in(trace.root, database) == []
    finally:
        primary.execute(f"DROP DATABASE IF EXISTS {q(other)}")


# --- issue 20.3: DISCARD TABLESPACE, short runs included ------------------------------------------

def test_discard_tablespace_is_refused_on_every_path_and_the_table_still_reads(e2e, primary, database, trace):
    create_sample_table(primary, database, "t", 2000)
    before = content_checksum(primary, database, "t")
    trace = trace()
    filed = e2e.create(ddl="ALTER TABLE t DISCARD TABLESPACE", database=database)["id"]
    # A short run already at copy in progress (approved before this check existed): run_ddl's own gate.
    short = stage_raw(e2e.db_path, database=database, ddl_statement="ALTER TABLE t DISCARD TABLESPACE",
                      status=3, runtype=2)
    # One sensor pass starts the new migration's run (refused at prepare); the short run staged at 3 has no
    # run waiting for it, so the next pass adopts it (after adopt_staged_after) and run_ddl refuses it.
    runs = claim_and_run() + claim_and_run()
    assert runs[0][0] == f"mig-{filed}" and runs[1][0].startswith(f"mig-{short}-"), [run_id for run_id, _ in runs]
    assert sorted(str(run.state) for _, run in runs) == ["failed", "failed"]
    for mid in (filed, short):
        refused(e2e, mid, "DISCARD ... TABLESPACE detaches or replaces the table's data files")
    assert trace.runner_statements_about(database) == []
    assert trace.binlog_events_about(trace.binlog_start, database) == []
    assert content_checksum(trace.root, database, "t") == before  # it reads: the data file is there


# --- issue 14.1: EXCHANGE / CONVERT PARTITION --------------------------------------------------

def test_partition_exchange_and_convert_are_refused_and_other_tables_keep_their_rows(e2e, primary, database, trace):
    create_sample_table(primary, database, "payroll", 500)
    create_sample_table(primary, database, "invoices", 200)
    primary.execute(f"CREATE TABLE {q(database)}.t LIKE {q(database)}.payroll",
                    f"ALTER TABLE {q(database)}.t PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN (1000), "
                    "PARTITION p1 VALUES LESS THAN (2000))",
                    f"INSERT INTO {q(database)}.t SELECT * FROM {q(database)}.payroll WHERE id <= 50")
    before = {name: content_checksum(primary, database, name) for name in ("t", "payroll", "invoices")}
    trace = trace()
    cases = {"ALTER TABLE t EXCHANGE PARTITION p0 WITH TABLE payroll": "EXCHANGE PARTITION swaps rows",
             "ALTER TABLE t CONVERT TABLE invoices TO PARTITION p2 VALUES LESS THAN (3000)": "CONVERT TABLE moves rows"}
    mids = {e2e.create(ddl=ddl, database=database)["id"]: message for ddl, message in cases.items()}
    claim_and_run()
    for mid, message in mids.items():
        refused(e2e, mid, message)
    assert trace.runner_statements_about(database) == []
    assert trace.binlog_events_about(trace.binlog_start, database) == []
    assert {name: content_checksum(trace.root, database, name) for name in before} == before
    assert before["payroll"][0] == 500 and tables_in(trace.root, database) == ["invoices", "payroll", "t"]


# --- issue 14.5: recursion_method pointing elsewhere -----------------------------------------------

def test_recursion_dsn_on_another_server_is_refused_and_no_login_reaches_it(e2e, primary, database):
    create_sample_table(primary, database, "t", 100)
    other = MariaDBServer(server_id=41).start()
    try:
        other_root = RootServer(other)
        other_root.execute("SET GLOBAL log_output = 'TABLE'", "SET GLOBAL general_log = 1")
        dsns = [f"dsn=h=2130706433,P={other.port},D=percona,t=dsns",  # 127.0.0.1 as a decimal
                f"dsn=h=127.0.0.1,P={other.port},D=percona,t=dsns", f"dsn=D=percona,t=dsns,P={other.port}",
                f"dsn=D=percona,t=dsns,S={other.socket_path}"]
        mids = [e2e.create(ddl="ALTER TABLE t ADD COLUMN x INT", database=database,
                           custom_options={"recursion_method": dsn})["id"] for dsn in dsns]
        while e2e.request("GET", "migrations/staged").json():
            claim_and_run()
        for mid in mids:
            refused(e2e, mid, "recursion_method must be one of")
        other_root.execute("SET GLOBAL general_log = 0")  # so the query below is not in it
        logins = other_root.query("SELECT command_type, argument FROM mysql.general_log "
                                  "WHERE user_host LIKE %s OR argument LIKE %s", (f"{TEST_USER}[%", f"%{TEST_USER}%"))
        assert logins == [], logins
        assert "x" not in columns_of(primary, database, "t")
    finally:
        other.stop()
        other.destroy()


# --- issue 20.4: a negative id ---------------------------------------------------------------

def test_negative_id_is_failed_and_the_sensor_then_waits_without_spinning(airflow_home, shift_api, shift_settings,
                                                                          primary, database, monkeypatch):
    shift_settings()
    upstream = BrokenUpstream(shift_api.root).start()
    monkeypatch.setenv("AIRFLOW_CONN_SHIFT_API", upstream.url)
    create_sample_table(primary, database, "t", 10)
    try:
        staged = stage_raw(shift_api.db_path, database=database, ddl_statement="ALTER TABLE t ADD COLUMN x INT")
        conn = sqlite3.connect(str(shift_api.db_path), timeout=30)
        with conn:
            conn.execute("UPDATE migrations SET id = -7 WHERE id = ?", (staged,))
        conn.close()
        assert shift_api.migration(-7)["staged"] is True  # the API answers to it
        # An entry no API could be asked about stays listed the whole time: logged, never claimed.
        upstream.always.append({"id": "forty", "status": 0, "database": database, "table": "t"})

        assert claim_and_run() == []  # pass 1: -7 claimed and failed; nothing to run
        failed = refused(shift_api, -7, "id must be positive, got -7")
        assert failed["error_message"].startswith("malformed migration -7")

        polls_before = upstream.staged_answers
        good: dict = {}
        timer = threading.Timer(30, lambda: good.update(shift_api.create(ddl="ALTER TABLE t ADD COLUMN y INT",
                                                                         database=database)))
        started = time.monotonic()
        timer.start()
        passes = 0
        while not good or shift_api.migration(good["id"])["staged"]:
            runs = claim_and_run()  # the sensor defers until something addressable is staged
            passes += 1
            assert time.monotonic() - started < 120, "the sensor never woke for the good migration"
        waited = time.monotonic() - started
        polls = upstream.staged_answers - polls_before
        assert passes == 1 and waited >= 30, (passes, waited)  # one claim pass in 30 s, not thousands
        assert 10 <= polls <= 30 / 0.5 * 2 + 10, polls  # polled at the 0.5 s interval meanwhile
        assert [str(run.state) for _, run in runs] == ["success"] and shift_api.migration(good["id"])["status"] == 1
        assert shift_api.migration(-7)["status"] == 10  # and the bad one was not touched again
    finally:
        upstream.stop()
