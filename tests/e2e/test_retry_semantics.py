"""Retrying from the Airflow UI does what a DBA means, and a staged migration without a run is adopted.

A cleared task re-runs on its run's newest claim: these tests run the run again on
that claim (``dag.test()`` cannot clear a task of a finished run), which is what the
cleared task does.
"""

from __future__ import annotations

import pytest

from tests.support.airflow import run_dag, task_states, xcoms
from tests.support.e2e import claim_and_run, claim_only, run_migration
from tests.support.mariadb import free_port
from tests.support.shift_api import shift_client
from tests.support.tables import columns_of, content_checksum, create_sample_table, triggers_on

ALTER = "ALTER TABLE t ADD COLUMN c INT, ADD INDEX idx_c (c)"


def human(api, *args):
    out = shift_client(*args, url=api.url)
    assert out.returncode == 0, out.stderr


@pytest.fixture
def e2e(airflow_home, shift_api, shift_settings, primary, database):
    shift_settings()
    return shift_api


def refusal(run, task_id: str) -> str:
    """Why the task refused to act (its XCom ``refused``, also its error in the task log)."""
    return xcoms(run).get(task_id, {}).get("refused", "")


def test_clearing_the_failed_copy_of_a_migration_at_error_resumes_and_completes_it(e2e, primary, database):
    create_sample_table(primary, database, "t", 2000)
    mid = e2e.create(ALTER, database=database)["id"]

    def start_after_meddling():
        # A DBA meddles after approval: without a primary key pt-osc cannot copy.
        primary.execute(f"ALTER TABLE `{database}`.t DROP PRIMARY KEY, MODIFY id BIGINT UNSIGNED NOT NULL")
        human(e2e, "start", str(mid))

    (_, run), = claim_and_run(e2e, {1: lambda: human(e2e, "approve", str(mid), "--runtype", "long"),
                                    2: start_after_meddling})
    states = task_states(run)
    assert states["copy"] == "failed" and states["await_rename"] == "upstream_failed", states
    assert e2e.migration(mid)["status"] == 13

    primary.execute(f"ALTER TABLE `{database}`.t ADD PRIMARY KEY (id)")
    claim = xcoms(run)["await_start"]["claimed"]  # the claim the copy acted on
    again = run_migration({**run.conf, **claim}, e2e, {4: lambda: human(e2e, "rename", str(mid))})
    states = task_states(again)
    assert states["copy"] == "success" and states["rename"] == "success", states
    assert e2e.migration(mid)["status"] == 8 and "c" in columns_of(primary, database, "t")
    assert triggers_on(primary, database) == []


def test_clearing_a_step_of_a_completed_or_failed_migration_fails_fast_without_sql(e2e, primary, database):
    create_sample_table(primary, database, "t", 100)
    mid = e2e.create("ALTER TABLE t ADD COLUMN s INT", database=database)["id"]
    (_, run), = claim_and_run(e2e, {1: lambda: human(e2e, "approve", str(mid), "--runtype", "short"),
                                    2: lambda: human(e2e, "start", str(mid))})
    assert e2e.migration(mid)["status"] == 8
    before = content_checksum(primary, database, "t")
    claim = xcoms(run)["await_start"]["claimed"]
    # run_ddl cleared: the claim it acted on; the cluster's port closed, so any SQL would fail differently.
    again = run_dag("shift_migration", {**run.conf, **claim, "port": free_port()})
    states = task_states(again)
    assert states["run_ddl"] == "failed", states
    assert "is completed (8) in shift" in refusal(again, "run_ddl")
    assert "no SQL ran" in refusal(again, "run_ddl") and "file a new migration" in refusal(again, "run_ddl")
    assert content_checksum(primary, database, "t") == before and e2e.migration(mid)["status"] == 8

    failed = e2e.create("ALTER TABLE t ADD COLUMN f INT", database=database)["id"]
    (_, conf), = claim_only()
    e2e.machine("fail", failed, error_message="refused by a human")
    again = run_dag("shift_migration", {**conf, "port": free_port()})  # prepare cleared: failed meanwhile
    states = task_states(again)
    assert states["prepare.validate_final_insert"] == "failed", states
    log = refusal(again, "prepare.validate_final_insert")
    assert "failed (10) in shift: refused by a human" in log and "no SQL ran" in log
    assert "f" not in columns_of(primary, database, "t")


def test_a_staged_migration_with_no_run_is_adopted_at_its_step(e2e, primary, database):
    """Started in shift while no run waits for it (filed before deployment, run deleted): a new run copies it."""
    create_sample_table(primary, database, "t", 1000)
    mid = e2e.create(ALTER, database=database)["id"]
    e2e.claim(mid)  # prepared by someone else (the Go runner), no Airflow run exists
    e2e.machine("next_step", mid)
    e2e.human("approve", mid)
    assert e2e.human("start", mid).status_code == 200
    (run_id, conf), = claim_only()
    assert run_id == f"mig-{mid}-{conf['lock_version']}" and conf["status"] == 3
    run = run_migration(conf, e2e, {4: lambda: human(e2e, "rename", str(mid))})
    states = task_states(run)
    assert states["copy"] == "success" and states["rename"] == "success", states
    assert all(states[t] == "skipped" for t in states if t.startswith("prepare.") or t == "await_start")
    assert e2e.migration(mid)["status"] == 8 and "c" in columns_of(primary, database, "t")
