"""Every path a DBA lives in, run by Airflow itself against the reference API and real MariaDB.

The sensor DAG claims (dag.test), the one shift_migration run it queued for the
migration is run too, and the human steps in between are done with the real
shift-client by a DBA thread while the run's waits are deferred.
"""

from __future__ import annotations

import pytest

from tests.support.airflow import run_dag, task_states, xcoms
from tests.support.e2e import claim_and_run, queued_migration_runs_with_notes
from tests.support.shift_api import shift_client
from tests.support.tables import (
    columns_of,
    content_checksum,
    create_sample_table,
    row_count,
    tables_in,
    triggers_on,
)

FINAL_INSERT = "INSERT INTO t (name, amount, created) VALUES ('final-insert', 7, '2021-01-01')"
PTOSC_TASKS = {"prepare.validate_final_insert", "prepare.dry_run", "prepare.detect_instant_ddl",
               "prepare.table_stats", "prepare.advance", "await_start", "copy", "await_rename", "rename"}
DIRECT_TASKS = {"prepare.validate_final_insert", "prepare.dry_run", "prepare.detect_instant_ddl",
                "prepare.table_stats", "prepare.advance", "await_start", "run_ddl"}


def human(shift_api, *args: str) -> None:
    out = shift_client(*args, url=shift_api.url)
    assert out.returncode == 0, out.stderr


def one_run(api, script):
    """The sensor DAG claims the new migration; its one run is run with the DBA acting on ``script``."""
    runs = claim_and_run(api, script)
    assert len(runs) == 1, runs
    run_id, dag_run = runs[0]
    assert run_id == f"mig-{dag_run.conf['id']}", run_id
    return dag_run


def assert_shape(run, done: set[str]):
    """Every task of ``done`` succeeded; the rest (the branch not taken) ended skipped."""
    states = task_states(run)
    assert str(run.state) == "success", states
    assert {t for t, s in states.items() if s == "success"} == done, states
    assert {t for t, s in states.items() if s != "success"} <= {"run_ddl", "copy", "await_rename", "rename"}, states
    assert all(s == "skipped" for t, s in states.items() if t not in done), states


def approve_and_start(api, mid, runtype):
    return {1: lambda: human(api, "approve", str(mid), "--runtype", runtype),
            2: lambda: human(api, "start", str(mid))}


@pytest.fixture
def e2e(airflow_home, shift_api, shift_settings, primary, database):
    shift_settings()
    return shift_api


def test_alter_long_run_through_all_machine_steps(e2e, primary, database):
    create_sample_table(primary, database, "t", 3000)
    before = content_checksum(primary, database, "t")
    # ADD INDEX makes it non-instant (issue 10), so this is the pt-osc path: copy, then the swap.
    mig = e2e.create(ddl="ALTER TABLE t ADD COLUMN salary INT NULL, ADD INDEX idx_salary (salary)",
                     database=database, final_insert=FINAL_INSERT)
    mid = mig["id"]

    def prepared():  # status 1: what prepare left, before the DBA approves
        after_prepare = e2e.migration(mid)
        assert int(after_prepare["table_rows_start"]) > 0
        human(e2e, "approve", str(mid), "--runtype", "long")

    def copied():  # status 4: the copy's shadow table and triggers wait for the rename
        assert f"_t_new_{mid}" in tables_in(primary, database) and len(triggers_on(primary, database, "t")) == 3
        human(e2e, "rename", str(mid))

    run = one_run(e2e, {1: prepared, 2: lambda: human(e2e, "start", str(mid)), 4: copied})
    # One run: prepare, the waits, copy and rename in order; the only skipped task is run_ddl.
    assert_shape(run, PTOSC_TASKS)
    values = xcoms(run)
    assert values["prepare.detect_instant_ddl"]["instant_ddl"] is False
    assert values["copy"]["copy_percentage"] == 100
    done = e2e.migration(mid)
    assert done["status"] == 8
    assert all(done[k] is not None for k in ("table_rows_end", "table_size_end", "index_size_end"))
    assert "salary" in columns_of(primary, database, "t")
    assert triggers_on(primary, database) == []
    assert tables_in(primary, database) == ["t"]
    old = [n for n in tables_in(primary, "_pending_drops") if n.endswith("_t")]
    assert old, tables_in(primary, "_pending_drops")
    assert content_checksum(primary, "_pending_drops", old[-1]) == before
    assert primary.query(f"SELECT COUNT(*) FROM `{database}`.t WHERE name = 'final-insert'")[0][0] == 1
    assert row_count(primary, database, "t") == 3001


def test_the_run_is_named_and_noted_for_its_migration(e2e, primary, database):
    """The claim names the run mig-<id> and notes cluster, db.table, the DDL, requestor and the shift link."""
    create_sample_table(primary, database, "t", 10)
    mid = e2e.create(ddl="ALTER TABLE t ADD COLUMN noted INT", database=database)["id"]
    assert str(run_dag("shift_staged_migrations").state) == "success"
    (run_id, conf, note), = queued_migration_runs_with_notes()
    assert run_id == f"mig-{mid}" and conf["id"] == mid
    assert f"`{database}.t`" in note and "ALTER TABLE t ADD COLUMN noted INT" in note
    assert f"http://localhost:3000/migrations/{mid}" in note and "requested by" in note


def test_alter_long_run_instant(e2e, primary, database):
    """An instant-capable ALTER: the copy copies nothing, the rename applies it with ALGORITHM=INSTANT."""
    create_sample_table(primary, database, "t", 3000)
    mid = e2e.create(ddl="ALTER TABLE t ADD COLUMN salary INT NULL", database=database,
                     final_insert=FINAL_INSERT)["id"]

    def copied():  # status 4: nothing was copied
        assert tables_in(primary, database) == ["t"] and triggers_on(primary, database) == []
        human(e2e, "rename", str(mid))

    run = one_run(e2e, {**approve_and_start(e2e, mid, "long"), 4: copied})
    assert_shape(run, PTOSC_TASKS)
    values = xcoms(run)
    assert values["prepare.detect_instant_ddl"]["instant_ddl"] is True
    assert values["copy"]["copy_outcome"] == "instant"
    assert values["rename"]["instant_ddl_outcome"] == "applied"
    assert e2e.migration(mid)["status"] == 8 and "salary" in columns_of(primary, database, "t")
    assert tables_in(primary, database) == ["t"] and triggers_on(primary, database) == []
    assert primary.query(f"SELECT COUNT(*) FROM `{database}`.t WHERE name = 'final-insert'")[0][0] == 1


def test_short_run_alter(e2e, primary, database):
    create_sample_table(primary, database, "t", 100)
    mid = e2e.create(ddl="ALTER TABLE t ADD COLUMN note VARCHAR(20)", database=database, final_insert=FINAL_INSERT)["id"]
    run = one_run(e2e, approve_and_start(e2e, mid, "short"))
    # The branch not taken: copy, and the rename it would lead to, end skipped.
    assert_shape(run, DIRECT_TASKS)
    assert e2e.migration(mid)["status"] == 8
    # Every task that ran carries the "Shift migration" link (Airflow 3 stores it in XCom when the task ends).
    links = {task: values.get("_link_ShiftMigrationLink") for task, values in xcoms(run).items()
             if "_link_ShiftMigrationLink" in values}
    assert DIRECT_TASKS <= set(links), links
    assert set(links.values()) == {f"http://localhost:3000/migrations/{mid}"}, links
    assert "note" in columns_of(primary, database, "t") and triggers_on(primary, database) == []
    assert primary.query(f"SELECT COUNT(*) FROM `{database}`.t WHERE name = 'final-insert'")[0][0] == 1


def test_create_table(e2e, primary, database):
    mid = e2e.create(ddl="CREATE TABLE fresh (id INT PRIMARY KEY, v VARCHAR(5))", database=database)["id"]

    def prepared():
        assert tables_in(primary, database) == []  # created and dropped again by the dry run
        human(e2e, "approve", str(mid), "--runtype", "short")

    run = one_run(e2e, {1: prepared, 2: lambda: human(e2e, "start", str(mid))})
    assert_shape(run, DIRECT_TASKS)
    assert e2e.migration(mid)["status"] == 8 and tables_in(primary, database) == ["fresh"]


def test_drop_table_with_trash(e2e, primary, database):
    create_sample_table(primary, database, "gone", 50)
    primary.execute(f"CREATE TRIGGER `{database}`.trg AFTER INSERT ON `{database}`.gone FOR EACH ROW SET @x = 1")
    before = content_checksum(primary, database, "gone")
    mid = e2e.create(ddl="DROP TABLE gone", database=database)["id"]
    run = one_run(e2e, approve_and_start(e2e, mid, "short"))
    assert_shape(run, DIRECT_TASKS)
    assert e2e.migration(mid)["status"] == 8
    assert tables_in(primary, database) == [] and triggers_on(primary, database) == []
    trashed = [n for n in tables_in(primary, "_pending_drops") if n.endswith("_gone")]
    assert trashed and len(trashed[-1]) == len("YYYYMMDDhhmmssmmm_gone")
    assert content_checksum(primary, "_pending_drops", trashed[-1]) == before


def test_drop_view(e2e, primary, database):
    create_sample_table(primary, database, "base", 10)
    primary.execute(f"CREATE VIEW `{database}`.v AS SELECT id FROM `{database}`.base")
    mid = e2e.create(ddl="DROP VIEW v", database=database)["id"]
    run = one_run(e2e, approve_and_start(e2e, mid, "short"))
    assert_shape(run, DIRECT_TASKS)
    assert e2e.migration(mid)["status"] == 8 and tables_in(primary, database) == ["base"]


def test_malformed_staged_payload_is_failed_and_others_still_processed(e2e, primary, database):
    create_sample_table(primary, database, "t", 100)
    bad = e2e.create(ddl="ALTER TABLE t ADD COLUMN x INT", database=database,
                     custom_options={"max_threads_running": "lots"})["id"]
    good = e2e.create(ddl="ALTER TABLE t ADD COLUMN y INT", database=database)["id"]
    # The DBA deletes the good one once prepared: its run's wait ends with the reason.
    runs = claim_and_run(e2e, {1: lambda: e2e.request("DELETE", f"migrations/{good}",
                                                      {"lock_version": e2e.migration(good)["lock_version"]})})
    assert [r.conf["id"] for _, r in runs] == [good]
    states = task_states(runs[0][1])
    assert all(states[t] == "success" for t in states if t.startswith("prepare.")), states
    assert states["await_start"] == "failed", states
    failed = e2e.migration(bad)
    assert failed["status"] == 10 and "max_threads_running" in failed["error_message"]
