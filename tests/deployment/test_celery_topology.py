"""Real deployment proof: scheduler, dag-processor, triggerer, api-server and two Celery workers.

One topology per module (tests.support.deployment.Deployment): real processes, a Redis
broker, PostgreSQL metadata, the reference shift API, two MariaDB clusters. A component that
crashes fails the test (with its log tail); none is restarted. Humans act
through ``shift-client``; Airflow is read through its REST API (/api/v2). The tests that
stop worker A come last and start it again.
"""

from __future__ import annotations

import ast
import json
import signal
import threading
import time

from tests.support.deployment import WORKERS, Deployment, ptosc_processes, wait_for, worker_of
from tests.support.deployment_steps import (
    client,
    file_migration,
    migration,
    new_database,
    prepared,
    ti_of,
    wait_status,
)
from tests.support.tables import (
    BackgroundWriter,
    columns_of,
    content_checksum,
    create_sample_table,
    tables_in,
    triggers_on,
)

WORKER_A, WORKER_B = WORKERS
# A liveness bound, not a speed claim (make bench measures claim latency): a pause, cancel or claim
# is acted on within this even on a loaded 2-core CI machine. The polls it rests on run every 1-2 s
# (tests/support/deployment.py), far inside it; a sensor rescheduled by the minute would miss it.
HONOUR_SECONDS = 30
# ~35-45 s of throttled pt-osc copy (SLOW_COPY: 300 chunks with a 0.1 s pause each), so few chunks cost
# little CPU: it still overlaps cluster one's copies, and a pause, a kill or the browser lands mid-copy.
LONG_COPY_ROWS = 60000
TIMINGS: dict[str, float] = {}


# -- helpers ----------------------------------------------------------------------------------

def prepared_on_one(deployment: Deployment, prefix: str, rows: int, column: str) -> tuple[str, tuple[int, int], int, str]:
    """A fresh table ``t`` of ``rows`` on cluster one and an ALTER adding ``column``, prepared (1):
    (database, content checksum before, migration id, its run id)."""
    database = new_database(prefix)
    create_sample_table(deployment.servers["one"], database, "t", rows)
    before = content_checksum(deployment.servers["one"], database, "t")
    mid = file_migration(deployment, "one", database, f"ALTER TABLE t ADD COLUMN {column} INT NULL")
    prepared(deployment, mid)
    return database, before, mid, f"mig-{mid}"


def copying_on(deployment: Deployment, mid: int, database: str, table: str, worker: str):
    """The copy runs: shift shows it pinned to ``worker`` with progress, and its pt-osc descends from it."""
    m = migration(deployment, mid)
    if m["status"] != 3 or m["run_host"] != worker or not float(m["copy_percentage"] or 0):
        return None
    procs = ptosc_processes(database, table)
    return procs if procs and all(worker_of(p, deployment) == worker for p in procs) else None


def start_copy_on_worker_a(deployment: Deployment, mid: int, database: str, table: str) -> None:
    """Approve and start with only worker A taking tasks; once pt-osc runs there, only B takes new ones."""
    client(deployment, "approve", str(mid), "--runtype", "long", "--approver", "dba")
    deployment.set_consuming(WORKER_B, False)
    try:
        client(deployment, "start", str(mid))
        wait_for(lambda: copying_on(deployment, mid, database, table, WORKER_A), 90,
                 f"migration {mid}'s copy to run on {WORKER_A}", interval=0.3)
    finally:
        deployment.set_consuming(WORKER_B, True)
    deployment.set_consuming(WORKER_A, False)


def task_hosts(deployment: Deployment, mid: int, task_id: str, step: str | None = None) -> list[tuple[str, str]]:
    """(state, hostname) of ``task_id`` in each of the migration's runs, oldest first."""
    return [(ti["state"], ti["hostname"]) for ti in deployment.migration_tis(mid, step) if ti["task_id"] == task_id]


def timed(name: str, since: float) -> float:
    TIMINGS[name] = round(time.monotonic() - since, 1)
    return TIMINGS[name]


# -- the tests --------------------------------------------------------------------------------

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
    assert timed("claim_after_staged", staged_at) <= HONOUR_SECONDS

    t = time.monotonic()
    m = prepared(deployment, mid)
    timed("prepare", t)
    assert int(m["table_rows_start"]) > 0

    client(deployment, "approve", str(mid), "--runtype", "long", "--approver", "dba")
    client(deployment, "start", str(mid))
    t = time.monotonic()
    pinned = wait_for(lambda: migration(deployment, mid)["run_host"], 60, "the copy to pin run_host", interval=0.1)
    wait_status(deployment, mid, {4}, 120)
    timed("copy_small", t)
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
    timed("rename", t)
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
    assert timed("pause_ptosc_gone", paused_at) <= HONOUR_SECONDS
    wait_status(deployment, mid, {12}, 60)
    timed("pause_to_status_12", paused_at)
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
    assert timed("cancel_ptosc_gone", canceled_at) <= HONOUR_SECONDS
    wait_for(lambda: deployment.migration_runs(mid)[0]["state"] == "success", 60, "the run to end")
    timed("cancel_cleaned_up", canceled_at)
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


def requests_delete(deployment: Deployment, path: str) -> None:
    deployment.rest("DELETE", path)


def copy_resume_of(deployment: Deployment, run_id: str, task_id: str) -> dict | None:
    """The copy task's ``copy_resume`` XCom (how its latest copy started), or None before it pushed one."""
    import requests

    try:
        entry = deployment.rest("GET", f"dags/shift_migration/dagRuns/{run_id}/taskInstances/{task_id}/"
                                       "xcomEntries/copy_resume", params={"deserialize": True})
    except requests.HTTPError:
        return None
    value = entry["value"]
    return value if isinstance(value, dict) else ast.literal_eval(value)


def test_one_copy_at_a_time_per_cluster_while_the_other_cluster_copies_in_parallel(both_workers):
    deployment = both_workers
    one, two = deployment.servers["one"], deployment.servers["two"]
    database = new_database("serial")
    tables_one = ["s1", "s2", "s3", "s4"]
    for table in tables_one:
        create_sample_table(one, database, table, 8000)
    # Long enough to still be copying when cluster one's first copy gets a slot: small tasks hold
    # the executor's slots a few seconds each, so that first copy can start ~10 s after this one.
    create_sample_table(two, database, "p", LONG_COPY_ROWS)
    ids_one = [file_migration(deployment, "one", database, f"ALTER TABLE {t} ADD COLUMN x INT NULL")
               for t in tables_one]
    id_two = file_migration(deployment, "two", database, "ALTER TABLE p ADD COLUMN x INT NULL")
    for mid in [*ids_one, id_two]:
        prepared(deployment, mid)
    for mid in [*ids_one, id_two]:
        client(deployment, "approve", str(mid), "--runtype", "long", "--approver", "dba")

    ports = {one.port: "one", two.port: "two"}
    samples: list[dict] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            at = time.monotonic()
            api = {mid: migration(deployment, mid) for mid in [*ids_one, id_two]}
            procs = {"one": 0, "two": 0}
            for proc in ptosc_processes(database):
                dsn = proc.info["cmdline"][-1]
                port = int(next(part[2:] for part in dsn.split(",") if part.startswith("P=")))
                procs[ports[port]] += 1
            samples.append({
                "t": at,
                "pinned_one": [mid for mid in ids_one if api[mid]["run_host"]],
                "copying_one": [mid for mid in ids_one if api[mid]["status"] == 3 and api[mid]["run_host"]
                                and float(api[mid]["copy_percentage"] or 0) < 100],
                "pinned_two": bool(api[id_two]["run_host"]),
                "ptosc_one": procs["one"], "ptosc_two": procs["two"],
                "hosts": {mid: api[mid]["run_host"] for mid in api if api[mid]["run_host"]},
            })
            stop.wait(max(0.0, 0.5 - (time.monotonic() - at)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.monotonic()
    try:
        for mid in [id_two, *ids_one]:  # started at once
            client(deployment, "start", str(mid))
        for mid in [*ids_one, id_two]:
            wait_status(deployment, mid, {4}, 240)
    finally:
        stop.set()
        sampler.join(timeout=10)
    timed("four_serial_copies_and_one_parallel", t)
    assert len(samples) > 20
    assert max(s["ptosc_one"] for s in samples) == 1, [s["ptosc_one"] for s in samples]
    assert max(len(s["pinned_one"]) for s in samples) == 1, [s["pinned_one"] for s in samples]
    assert max(len(s["copying_one"]) for s in samples) <= 1
    # Every copy on cluster one was seen running, one after the other, and cluster two's alongside.
    assert {mid for s in samples for mid in s["pinned_one"]} == set(ids_one)
    assert any(s["ptosc_one"] == 1 and s["ptosc_two"] == 1 for s in samples), "no parallel copy on cluster two seen"
    assert {host for s in samples for host in s["hosts"].values()} <= set(WORKERS)
    for table, mid in zip(tables_one, ids_one):
        assert "x" in columns_of(one, database, f"_{table}_new_{mid}")


def _copy_survives_losing_worker_a(deployment: Deployment, how: str) -> None:
    """Stop worker A (``how``: "sigterm" or "sigkill" of its process group) mid-copy; B finishes the migration."""
    server = deployment.servers["two"]
    database = new_database(how)
    create_sample_table(server, database, "t", LONG_COPY_ROWS)
    original = columns_of(server, database, "t")
    mid = file_migration(deployment, "two", database, f"ALTER TABLE t ADD COLUMN {how}_col INT NULL")
    prepared(deployment, mid)
    writer = BackgroundWriter(server, database, "t", interval=0.01).start()
    try:
        start_copy_on_worker_a(deployment, mid, database, "t")
        # Worker A has synced a checkpoint to shift's state file: that is what worker B resumes from.
        wait_for(lambda: deployment.shift_api.state(mid).checkpoint.get("resumable"), 60,
                 "a checkpoint in shift's state file", interval=0.3)
        worker_a = deployment.components[WORKER_A]
        stopped_at = time.monotonic()
        worker_a.signal_group(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
        wait_for(lambda: not ptosc_processes(database, "t"), HONOUR_SECONDS, f"pt-osc to die with worker A ({how})",
                 interval=0.1)
        timed(f"{how}_ptosc_gone", stopped_at)

        def handed_back():
            m = migration(deployment, mid)
            if m["status"] == 13:
                return m
            if m["status"] == 3 and (m["staged"] or m["run_host"] == WORKER_B):
                return m
            return None

        back = wait_for(handed_back, 120, "the migration to be offered back or errored", interval=0.2)
        timed(f"{how}_handed_back", stopped_at)
        wait_for(lambda: not worker_a.group_alive() or worker_a.process.poll() is not None, 60,
                 "worker A to exit")
        if back["status"] == 13:
            client(deployment, "resume", str(mid))
        wait_for(lambda: migration(deployment, mid)["run_host"] == WORKER_B, 90, "worker B to take the copy over")
        assert not ptosc_processes(database, "t") or all(
            worker_of(p, deployment) == WORKER_B for p in ptosc_processes(database, "t"))
        wait_status(deployment, mid, {4}, 180)
        timed(f"{how}_recopied_on_b", stopped_at)
    finally:
        writer.stop()
    control = content_checksum(server, database, "t", original)
    client(deployment, "rename", str(mid))
    wait_status(deployment, mid, {8}, 90)
    assert f"{how}_col" in columns_of(server, database, "t")
    assert content_checksum(server, database, "t", original) == control
    assert writer.operations > 100 and writer.missing_rows() == set()
    assert triggers_on(server, database) == [] and tables_in(server, database) == ["t"]
    copies = task_hosts(deployment, mid, "copy", "copy")
    assert copies[0][1] == WORKER_A and copies[0][0] in ("failed", "up_for_retry", "success"), copies
    assert copies[-1] == ("success", WORKER_B), copies
    # Worker B resumed from worker A's checkpoint instead of copying from the first row.
    run_id = deployment.migration_runs(mid, "copy")[-1]["dag_run_id"]
    start = copy_resume_of(deployment, run_id, "copy")
    assert start and start["resumed"] is True and start["rows_copied_before"] > 0 and start["boundary"], start
    log = deployment.shift_api.log_file(mid)
    assert f"resuming the copy after boundary {start['boundary']}" in log
    assert "that cannot be resumed from" not in log


def test_warm_shutdown_of_worker_a_hands_the_copy_to_worker_b(both_workers):
    _copy_survives_losing_worker_a(both_workers, "sigterm")


def test_kill_9_of_worker_a_hands_the_copy_to_worker_b(both_workers):
    _copy_survives_losing_worker_a(both_workers, "sigkill")
