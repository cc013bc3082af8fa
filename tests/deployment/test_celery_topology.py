"""Real deployment proof, a migration's life: scheduler, dag-processor, triggerer, api-server, two Celery workers.

One topology per module (tests.support.deployment.Deployment, started by tests/deployment/conftest.py):
real processes, a Redis broker, PostgreSQL metadata, the reference shift API, two MariaDB clusters.
A component that crashes fails the test (with its log tail); none is restarted. Humans act through
``shift-client``; Airflow is read through its REST API (/api/v2), and cleared through it as the UI's
"Clear" button does. Copies across clusters and lost workers are in test_copies_and_workers.py, on a
topology of their own, so the two modules run side by side. Every timeout is a liveness bound for a
loaded 2-core machine, never a speed claim.
"""

from __future__ import annotations

import json
import time

from tests.support.deployment import Deployment, ptosc_processes, wait_for
from tests.support.deployment_steps import (HONOUR_SECONDS, LONG_COPY_ROWS, WORKER_A, WORKER_B, WORKERS, client,
                                            copy_resume_of, copying_on, file_migration, migration, new_database,
                                            prepared, prepared_on_one, requests_delete, start_copy_on_worker_a,
                                            task_hosts, ti_of, timed, wait_status)
from tests.support.tables import columns_of, content_checksum, create_sample_table, tables_in, triggers_on

TIMINGS: dict[str, float] = {}


def test_deferred_sensor_claims_within_seconds_and_a_migration_lives_its_whole_life(both_workers):
    deployment = both_workers
    one = deployment.servers["one"]

    # Idle: the sensor waits on the triggerer, deferred, and no worker runs it.
    def deferred_sensor():
        runs = [r for r in deployment.dag_runs("shift_staged_migrations") if r["state"] == "running"]
        for run in runs:
            for ti in deployment.task_instances("shift_staged_migrations", run["dag_run_id"]):
                if ti["task_id"] == "wait_for_staged" and ti["state"] == "deferred" and ti.get("triggerer_job"):
                    return ti
        return None

    ti = wait_for(deferred_sensor, 60, "the staged-migrations sensor to be deferred on the triggerer")
    assert ti["trigger"]["classpath"] == "shift_provider.triggers.staged.StagedMigrationsTrigger"

    def sensor_on_a_worker() -> list:
        return [task for tasks in deployment.active_celery_tasks().values() for task in tasks
                if "wait_for_staged" in json.dumps(task.get("args"))]

    # The worker's supervisor exits a few seconds after the task deferred; then no slot is held.
    wait_for(lambda: not sensor_on_a_worker(), 30, "the deferred sensor to leave its worker")
    for _ in range(3):  # stays deferred, on no worker
        assert sensor_on_a_worker() == []
        assert deferred_sensor() is not None
        time.sleep(1)

    database = new_database("life")
    create_sample_table(one, database, "t", 3000)
    before = content_checksum(one, database, "t")
    mid = file_migration(deployment, "one", database, "ALTER TABLE t ADD COLUMN salary INT NULL")
    staged_at = time.monotonic()
    wait_for(lambda: not migration(deployment, mid)["staged"], 60, "the staged migration to be claimed",
             interval=0.1)
    assert timed(TIMINGS, "claim_after_staged", staged_at) <= HONOUR_SECONDS

    t = time.monotonic()
    m = prepared(deployment, mid)
    timed(TIMINGS, "prepare", t)
    assert int(m["table_rows_start"]) > 0

    client(deployment, "approve", str(mid), "--runtype", "long", "--approver", "dba")
    client(deployment, "start", str(mid))
    t = time.monotonic()
    pinned = wait_for(lambda: migration(deployment, mid)["run_host"], 60, "the copy to pin run_host", interval=0.1)
    wait_status(deployment, mid, {4}, 120)
    timed(TIMINGS, "copy_small", t)
    done = wait_for(lambda: (m := migration(deployment, mid))["run_host"] is None and m, 10, "run_host unpinned")
    assert float(done["copy_percentage"]) == 100
    assert pinned in WORKERS
    (copy_state, copy_host), = task_hosts(deployment, mid, "copy", "copy")
    assert (copy_state, copy_host) == ("success", pinned)  # the TI's host is the pinned run_host
    run_id = deployment.migration_runs(mid, "copy")[0]["dag_run_id"]
    assert run_id == f"mig-{mid}"  # one run per migration
    xcom = deployment.rest("GET", f"dags/shift_migration/dagRuns/{run_id}/taskInstances/copy/"
                                  "xcomEntries/copy_percentage")
    assert xcom["value"] == 100
    # While the DBA has not renamed, the run waits deferred on the triggerer, on no worker.
    waiting = wait_for(lambda: ti_of(deployment, run_id, "await_rename", "deferred"), 30, "await_rename deferred")
    assert waiting["trigger"]["classpath"] == "shift_provider.triggers.migration_wait.MigrationWaitTrigger"

    client(deployment, "rename", str(mid))
    t = time.monotonic()
    wait_status(deployment, mid, {8}, 90)
    timed(TIMINGS, "rename", t)
    assert "salary" in columns_of(one, database, "t")
    assert tables_in(one, database) == ["t"] and triggers_on(one, database) == []
    assert content_checksum(one, database, "t", ["id", "name", "amount", "created"]) == before
    assert [r["dag_run_id"] for r in deployment.migration_runs(mid)] == [f"mig-{mid}"]
    wait_for(lambda: deployment.migration_runs(mid)[0]["state"] == "success", 30, "the migration's run to succeed")
    states = {ti["task_id"]: ti["state"] for ti in deployment.task_instances("shift_migration", run_id)}
    assert [t for t, state in states.items() if state != "success"] == ["run_ddl"], states  # the branch not taken
    note = deployment.rest("GET", f"dags/shift_migration/dagRuns/{run_id}")["note"]
    assert f"`{database}.t`" in note and "ADD COLUMN salary" in note, note
    # The scheduler's listener ends the note with how the run ended.
    wait_for(lambda: "**completed**" in (deployment.rest("GET", f"dags/shift_migration/dagRuns/{run_id}")["note"]
                                         or ""), 30, "the final note")

    # Clearing a step of the completed migration fails at once, saying so, and runs no SQL.
    deployment.rest("POST", "dags/shift_migration/clearTaskInstances",
                    {"dry_run": False, "task_ids": ["rename"], "dag_run_id": run_id, "only_failed": False,
                     "reset_dag_runs": True})
    failed = wait_for(lambda: ti_of(deployment, run_id, "rename", "failed"), 90, "the cleared rename to fail")
    refused = deployment.rest("GET", f"dags/shift_migration/dagRuns/{run_id}/taskInstances/rename/"
                                     "xcomEntries/refused")["value"]
    assert "is completed (8) in shift" in refused and "no SQL ran" in refused, refused
    assert failed["try_number"] == 2
    assert content_checksum(one, database, "t", ["id", "name", "amount", "created"]) == before


def test_pause_defers_the_copy_resume_continues_it_in_the_same_task_and_cancel_cleans_up(both_workers):
    deployment = both_workers
    one = deployment.servers["one"]
    database, before, mid, run_id = prepared_on_one(deployment, "pc", LONG_COPY_ROWS, "paused_col")

    # Pause while pt-osc copies on A: the copy task stops it, moves shift to 12 and waits deferred.
    start_copy_on_worker_a(deployment, mid, database, "t")
    client(deployment, "pause", str(mid))
    paused_at = time.monotonic()
    wait_for(lambda: not ptosc_processes(database, "t"), HONOUR_SECONDS, "pt-osc to stop after the pause",
             interval=0.1)
    assert timed(TIMINGS, "pause_ptosc_gone", paused_at) <= HONOUR_SECONDS
    wait_status(deployment, mid, {12}, 60)
    timed(TIMINGS, "pause_to_status_12", paused_at)
    deferred = wait_for(lambda: ti_of(deployment, run_id, "copy", "deferred"), 30, "the paused copy deferred")
    assert deferred["trigger"]["classpath"] == "shift_provider.triggers.migration_wait.MigrationWaitTrigger"
    assert migration(deployment, mid)["run_host"] is None

    # Resume: the same copy task claims it and copies again (on A, the worker taking tasks).
    deployment.set_consuming(WORKER_A, True)
    deployment.set_consuming(WORKER_B, False)
    try:
        client(deployment, "resume", str(mid))
        wait_for(lambda: copying_on(deployment, mid, database, "t", WORKER_A), 90, "the resumed copy on worker A",
                 interval=0.3)
    finally:
        deployment.set_consuming(WORKER_B, True)
    copy_ti = ti_of(deployment, run_id, "copy", "running")
    assert copy_ti and copy_ti["try_number"] == 1, copy_ti  # the same task, not a retry or a new run
    # ... and it goes on from the checkpoint the paused copy left, not from the first row.
    start = wait_for(lambda: copy_resume_of(deployment, run_id, "copy"), 30, "the resumed copy's copy_resume")
    assert start["resumed"] is True and start["rows_copied_before"] > 0 and start["boundary"], start
    wait_for(lambda: f"resuming the copy after boundary {start['boundary']}" in deployment.shift_api.log_file(mid),
             30, "the resume's line in the shift log (shipped every log_sync_interval)", interval=0.5)

    # Cancel while it copies: the copy stops pt-osc, claims the cancel, cleans up, and the run ends.
    client(deployment, "cancel", str(mid))
    canceled_at = time.monotonic()
    wait_for(lambda: not ptosc_processes(database, "t"), HONOUR_SECONDS, "pt-osc to stop after the cancel",
             interval=0.1)
    assert timed(TIMINGS, "cancel_ptosc_gone", canceled_at) <= HONOUR_SECONDS
    wait_for(lambda: deployment.migration_runs(mid)[0]["state"] == "success", 60, "the run to end")
    timed(TIMINGS, "cancel_cleaned_up", canceled_at)
    states = {ti["task_id"]: ti["state"] for ti in deployment.task_instances("shift_migration", run_id)}
    assert states["copy"] == "skipped" and states["await_rename"] == "skipped", states
    assert migration(deployment, mid)["status"] == 9
    assert triggers_on(one, database) == [] and tables_in(one, database) == ["t"]
    assert "paused_col" not in columns_of(one, database, "t")
    assert content_checksum(one, database, "t") == before


def test_a_staged_migration_with_no_run_is_adopted(both_workers):
    """Prepared and started while no run waits for it (e.g. before this runner was deployed): adopted."""
    deployment = both_workers
    one = deployment.servers["one"]
    database = new_database("adopt")
    create_sample_table(one, database, "t", 2000)
    mid = file_migration(deployment, "one", database, "ALTER TABLE t ADD COLUMN adopted INT NULL")
    prepared(deployment, mid)
    run_id = f"mig-{mid}"
    wait_for(lambda: ti_of(deployment, run_id, "await_start", "deferred"), 60, "the run to wait for the start")
    # The run is ended and deleted (Airflow refuses to delete a running run).
    deployment.rest("PATCH", f"dags/shift_migration/dagRuns/{run_id}", {"state": "failed"})
    requests_delete(deployment, f"dags/shift_migration/dagRuns/{run_id}")
    client(deployment, "approve", str(mid), "--runtype", "long", "--approver", "dba")
    client(deployment, "start", str(mid))
    adopted = wait_for(lambda: [r for r in deployment.migration_runs(mid) if r["dag_run_id"] != run_id], 90,
                       "a new run to adopt the migration")
    wait_status(deployment, mid, {4}, 120)
    client(deployment, "rename", str(mid))
    wait_status(deployment, mid, {8}, 90)
    assert adopted[0]["dag_run_id"].startswith(f"mig-{mid}-")
    assert "adopted" in columns_of(one, database, "t") and triggers_on(one, database) == []


def test_the_migration_view_shows_the_copy_moving_in_a_headless_browser(both_workers):
    """The run's "Migration" view (the console's iframe in Airflow's UI) and the "Shift" page, in chromium."""
    import requests

    from tests.support.browser import headless_chromium, log_in, plugin_frame, text_of

    deployment = both_workers
    one = deployment.servers["one"]
    database, before, mid, run_id = prepared_on_one(deployment, "ui", LONG_COPY_ROWS, "viewed")
    console = f"{deployment.airflow_url}/shift-console"
    pages = [f"/api/migration/shift_migration/{run_id}", "/api/migrations",
             f"/migration/shift_migration/{run_id}", "/migrations", "/static/console.js"]

    # Behind Airflow's auth: no credentials, or a forged token, are refused; the admin's token is not.
    for path in pages:
        assert requests.get(console + path, timeout=10).status_code == 401, path
        forged = requests.get(console + path, headers={"Authorization": "Bearer not.a.jwt"}, timeout=10)
        assert forged.status_code in (401, 403), (path, forged.status_code)
    answer = requests.get(console + pages[0], headers={"Authorization": f"Bearer {deployment.token()}"}, timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] == {"code": 1, "name": "awaiting approval"}
    assert answer.json()["next_action"] == "a human approves it in shift (long, short or nocheckalter run)"

    client(deployment, "approve", str(mid), "--runtype", "long", "--approver", "dba")
    client(deployment, "start", str(mid))
    wait_for(lambda: migration(deployment, mid)["status"] == 3 and ti_of(deployment, run_id, "copy", "running"), 90,
             "the copy to run")
    with headless_chromium() as driver:
        log_in(driver, deployment.airflow_url, deployment.token())
        plugin_frame(driver, f"{deployment.airflow_url}/dags/shift_migration/runs/{run_id}/plugin/shift-migration",
                     "Migration")

        def percent_shown() -> float | None:
            shown = text_of(driver, "percent")
            return float(shown) if shown not in ("", "-") else None

        first = wait_for(lambda: (p := percent_shown()) is not None and p < 90 and p, 60,
                         "the view to show the copy's percentage")
        assert text_of(driver, "status") == "copy in progress (3)"
        assert text_of(driver, "step") == "copying rows (pt-osc) (copy: running)"
        assert text_of(driver, "title") == f"Migration {mid}: {database}.t on one"
        # The page refreshes itself (the XCom tab does not): the same page, read again, has moved on.
        wait_for(lambda: (p := percent_shown()) is not None and p > first and p, 60,
                 f"the shown percentage to grow past {first}")
        assert ti_of(deployment, run_id, "copy", "running"), "the copy ended before the second read"

        # The Shift page lists it among the migrations in flight, linking to its Migration view.
        from selenium.webdriver.common.by import By

        plugin_frame(driver, f"{deployment.airflow_url}/plugin/shift", "Shift")
        row = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, f"tr[data-migration-id='{mid}']"), 30,
                       "the migration on the Shift page")[0]
        assert f"{database}.t" in row.text and "copy in progress (3)" in row.text, row.text
        link = row.find_element(By.CSS_SELECTOR, "a").get_attribute("href")
        assert link.endswith(f"/dags/shift_migration/runs/{run_id}/plugin/shift-migration"), link

    # Cancel (the pause test proves it): the copy stops and cleans up, and cluster one is free again.
    client(deployment, "cancel", str(mid))
    wait_for(lambda: deployment.migration_runs(mid)[0]["state"] == "success", 60, "the run to end")
    assert triggers_on(one, database) == [] and tables_in(one, database) == ["t"]
    assert content_checksum(one, database, "t") == before


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
