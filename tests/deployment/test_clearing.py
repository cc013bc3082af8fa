"""Retry from the Airflow UI, through a real deployment: clearing a failed copy of a migration at
error (13) resumes it in shift and copies; a cancel while the run then awaits the rename is
claimed by that wait, which cleans up, and the run's note ends saying canceled.

Its own module, so its own topology (``tests/deployment/conftest.py``). The clear goes
through Airflow's REST API, as the UI's "Clear" button sends it. Every timeout here is a
liveness bound for a loaded 2-core machine (polling.wait_for), never a speed claim.
"""

from __future__ import annotations

from tests.support.deployment import Deployment, wait_for
from tests.support.deployment_steps import client, file_migration, migration, new_database, prepared, ti_of, wait_status
from tests.support.tables import columns_of, content_checksum, create_sample_table, tables_in, triggers_on


def task_states(deployment: Deployment, run_id: str) -> dict[str, tuple[str | None, int]]:
    """task id -> (state, try number) of every task of the run, for the failure messages."""
    return {ti["task_id"]: (ti["state"], ti["try_number"])
            for ti in deployment.task_instances("shift_migration", run_id)}


def run_state(deployment: Deployment, run_id: str) -> str:
    return deployment.rest("GET", f"dags/shift_migration/dagRuns/{run_id}")["state"]


def test_clearing_a_failed_copy_at_error_resumes_it_and_a_cancel_while_awaiting_rename_cleans_up(both_workers):
    deployment = both_workers
    one = deployment.servers["one"]
    database = new_database("clear")
    create_sample_table(one, database, "t", 3000)
    before = content_checksum(one, database, "t")
    mid = file_migration(deployment, "one", database, "ALTER TABLE t ADD COLUMN cleared INT NULL")
    prepared(deployment, mid)
    run_id = f"mig-{mid}"
    client(deployment, "approve", str(mid), "--runtype", "long", "--approver", "dba")
    # A DBA meddles after approval: without a primary key pt-osc cannot copy, so the copy errors (13).
    one.execute(f"ALTER TABLE `{database}`.t DROP PRIMARY KEY, MODIFY id BIGINT UNSIGNED NOT NULL")
    client(deployment, "start", str(mid))
    # The DBA clears the copy once the grid shows the run failed, not the moment the copy task
    # failed: until the scheduler has settled the run, its pass over the run (which read the copy
    # as failed) may land after the clear and put the cleared downstream tasks back to
    # upstream_failed (apache/airflow#18628), leaving no task to wait for the rename.
    wait_for(lambda: run_state(deployment, run_id) == "failed", 120, "the run to fail with its copy")
    states = task_states(deployment, run_id)
    assert states["copy"] == ("failed", 1) and states["await_rename"][0] == "upstream_failed", states
    assert migration(deployment, mid)["status"] == 13

    one.execute(f"ALTER TABLE `{database}`.t ADD PRIMARY KEY (id)")
    cleared = deployment.rest("POST", "dags/shift_migration/clearTaskInstances",
                              {"dry_run": False, "task_ids": ["copy"], "dag_run_id": run_id, "only_failed": False,
                               "include_downstream": True, "reset_dag_runs": True})
    assert {ti["task_id"] for ti in cleared["task_instances"]} == {"copy", "await_rename", "rename"}, cleared
    wait_status(deployment, mid, {4}, 180)  # resumed in shift by the cleared task, claimed, copied
    copy_ti = wait_for(lambda: ti_of(deployment, run_id, "copy", "success"), 120, "the cleared copy to succeed")
    assert copy_ti["try_number"] == 2
    # Deferred is where await_rename stays until a human acts: the run now waits for the rename.
    try:
        waiting = wait_for(lambda: ti_of(deployment, run_id, "await_rename", "deferred"), 120,
                           "await_rename deferred")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {task_states(deployment, run_id)}") from None
    assert waiting["trigger"]["classpath"] == "shift_provider.triggers.migration_wait.MigrationWaitTrigger"
    assert len(triggers_on(one, database)) == 3  # the copy's triggers, kept for the rename

    client(deployment, "cancel", str(mid))
    wait_for(lambda: run_state(deployment, run_id) == "success", 120, "the run to end")
    states = task_states(deployment, run_id)
    assert states["await_rename"][0] == "success" and states["rename"][0] == "skipped", states
    assert migration(deployment, mid)["status"] == 9
    assert triggers_on(one, database) == [] and tables_in(one, database) == ["t"]
    assert "cleared" not in columns_of(one, database, "t")
    assert content_checksum(one, database, "t") == before
    # The scheduler's listener ends the note with how the run ended.
    wait_for(lambda: "**canceled**" in (deployment.rest("GET", f"dags/shift_migration/dagRuns/{run_id}")["note"]
                                        or ""), 120, "the final note saying canceled")
