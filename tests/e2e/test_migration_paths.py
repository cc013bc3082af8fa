"""Every path a DBA lives in, run by Airflow itself against the reference API and real MariaDB.

The sensor DAG claims (dag.test), the shift_migration runs it queued are run
too, and the human steps in between are done with the real shift-client.
"""

from __future__ import annotations

import pytest

from tests.support.airflow import task_states, xcoms
from tests.support.e2e import claim_and_run
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


def human(shift_api, *args: str) -> None:
    out = shift_client(*args, url=shift_api.url)
    assert out.returncode == 0, out.stderr


def one_run(expected_step: str):
    runs = claim_and_run()
    assert len(runs) == 1, runs
    run_id, dag_run = runs[0]
    assert run_id.startswith("mig-") and f"-{expected_step}-" in run_id, run_id
    return dag_run


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

    prepare = one_run("prepare")
    assert str(prepare.state) == "success", task_states(prepare)
    after_prepare = e2e.migration(mid)
    assert after_prepare["status"] == 1 and int(after_prepare["table_rows_start"]) > 0
    assert xcoms(prepare)["prepare.detect_instant_ddl"]["instant_ddl"] is False

    human(e2e, "approve", str(mid), "--runtype", "long")
    human(e2e, "start", str(mid))
    copy = one_run("copy")
    assert str(copy.state) == "success", task_states(copy)
    assert e2e.migration(mid)["status"] == 4
    assert xcoms(copy)["copy.any_cluster"]["copy_percentage"] == 100
    assert f"_t_new_{mid}" in tables_in(primary, database) and len(triggers_on(primary, database, "t")) == 3

    human(e2e, "rename", str(mid))
    rename = one_run("rename")
    assert str(rename.state) == "success", task_states(rename)
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


def test_alter_long_run_instant(e2e, primary, database):
    """An instant-capable ALTER: the copy copies nothing, the rename applies it with ALGORITHM=INSTANT."""
    create_sample_table(primary, database, "t", 3000)
    mid = e2e.create(ddl="ALTER TABLE t ADD COLUMN salary INT NULL", database=database,
                     final_insert=FINAL_INSERT)["id"]
    prepare = one_run("prepare")
    assert str(prepare.state) == "success", task_states(prepare)
    assert xcoms(prepare)["prepare.detect_instant_ddl"]["instant_ddl"] is True
    human(e2e, "approve", str(mid), "--runtype", "long")
    human(e2e, "start", str(mid))
    copy = one_run("copy")
    assert str(copy.state) == "success", task_states(copy)
    assert xcoms(copy)["copy.any_cluster"]["copy_outcome"] == "instant" and e2e.migration(mid)["status"] == 4
    assert tables_in(primary, database) == ["t"] and triggers_on(primary, database) == []
    human(e2e, "rename", str(mid))
    rename = one_run("rename")
    assert str(rename.state) == "success", task_states(rename)
    assert xcoms(rename)["rename"]["instant_ddl_outcome"] == "applied"
    assert e2e.migration(mid)["status"] == 8 and "salary" in columns_of(primary, database, "t")
    assert tables_in(primary, database) == ["t"] and triggers_on(primary, database) == []
    assert primary.query(f"SELECT COUNT(*) FROM `{database}`.t WHERE name = 'final-insert'")[0][0] == 1


def test_short_run_alter(e2e, primary, database):
    create_sample_table(primary, database, "t", 100)
    mid = e2e.create(ddl="ALTER TABLE t ADD COLUMN note VARCHAR(20)", database=database, final_insert=FINAL_INSERT)["id"]
    assert str(one_run("prepare").state) == "success"
    human(e2e, "approve", str(mid), "--runtype", "short")
    human(e2e, "start", str(mid))
    run = one_run("run_ddl")
    assert str(run.state) == "success", task_states(run)
    assert e2e.migration(mid)["status"] == 8
    # Every task of the run, route included, carries the "Shift migration" link (Airflow 3 stores it in
    # XCom when the task ends).
    links = {task: values.get("_link_ShiftMigrationLink") for task, values in xcoms(run).items()}
    assert set(links) == {"route", "run_ddl"}, links
    assert set(links.values()) == {f"http://localhost:3000/migrations/{mid}"}, links
    assert "note" in columns_of(primary, database, "t") and triggers_on(primary, database) == []
    assert primary.query(f"SELECT COUNT(*) FROM `{database}`.t WHERE name = 'final-insert'")[0][0] == 1


def test_create_table(e2e, primary, database):
    mid = e2e.create(ddl="CREATE TABLE fresh (id INT PRIMARY KEY, v VARCHAR(5))", database=database)["id"]
    assert str(one_run("prepare").state) == "success"
    assert tables_in(primary, database) == []  # created and dropped again by the dry run
    human(e2e, "approve", str(mid), "--runtype", "short")
    human(e2e, "start", str(mid))
    assert str(one_run("run_ddl").state) == "success"
    assert e2e.migration(mid)["status"] == 8 and tables_in(primary, database) == ["fresh"]


def test_drop_table_with_trash(e2e, primary, database):
    create_sample_table(primary, database, "gone", 50)
    primary.execute(f"CREATE TRIGGER `{database}`.trg AFTER INSERT ON `{database}`.gone FOR EACH ROW SET @x = 1")
    before = content_checksum(primary, database, "gone")
    mid = e2e.create(ddl="DROP TABLE gone", database=database)["id"]
    assert str(one_run("prepare").state) == "success"
    human(e2e, "approve", str(mid), "--runtype", "short")
    human(e2e, "start", str(mid))
    assert str(one_run("run_ddl").state) == "success"
    assert e2e.migration(mid)["status"] == 8
    assert tables_in(primary, database) == [] and triggers_on(primary, database) == []
    trashed = [n for n in tables_in(primary, "_pending_drops") if n.endswith("_gone")]
    assert trashed and len(trashed[-1]) == len("YYYYMMDDhhmmssmmm_gone")
    assert content_checksum(primary, "_pending_drops", trashed[-1]) == before


def test_drop_view(e2e, primary, database):
    create_sample_table(primary, database, "base", 10)
    primary.execute(f"CREATE VIEW `{database}`.v AS SELECT id FROM `{database}`.base")
    mid = e2e.create(ddl="DROP VIEW v", database=database)["id"]
    assert str(one_run("prepare").state) == "success"
    human(e2e, "approve", str(mid), "--runtype", "short")
    human(e2e, "start", str(mid))
    assert str(one_run("run_ddl").state) == "success"
    assert e2e.migration(mid)["status"] == 8 and tables_in(primary, database) == ["base"]


def test_malformed_staged_payload_is_failed_and_others_still_processed(e2e, primary, database):
    create_sample_table(primary, database, "t", 100)
    bad = e2e.create(ddl="ALTER TABLE t ADD COLUMN x INT", database=database,
                     custom_options={"max_threads_running": "lots"})["id"]
    good = e2e.create(ddl="ALTER TABLE t ADD COLUMN y INT", database=database)["id"]
    runs = claim_and_run()
    assert [r.conf["id"] for _, r in runs] == [good]
    assert str(runs[0][1].state) == "success"
    failed = e2e.migration(bad)
    assert failed["status"] == 10 and "max_threads_running" in failed["error_message"]
    assert e2e.migration(good)["status"] == 1
