"""What the deployment tests do to a started ``Deployment``: play the human through ``shift-client``,
read shift's API and Airflow's task instances, file and prepare migrations.

Shared by every module of ``tests/deployment`` (each starts its own topology through the
``deployment`` fixture of ``tests/deployment/conftest.py``).
"""

from __future__ import annotations

import ast
import json
import time
import uuid

from tests.support.deployment import WORKERS, Deployment, ptosc_processes, wait_for, worker_of
from tests.support.shift_api import shift_client
from tests.support.tables import content_checksum, create_sample_table

WORKER_A, WORKER_B = WORKERS
# A liveness bound, not a speed claim (make bench measures claim latency): a pause, cancel or claim
# is acted on within this even on a loaded 2-core CI machine. The polls it rests on run every 1-2 s
# (tests/support/deployment.py), far inside it; a sensor rescheduled by the minute would miss it.
HONOUR_SECONDS = 30
# ~35-45 s of throttled pt-osc copy (SLOW_COPY: 300 chunks with a 0.1 s pause each), so few chunks cost
# little CPU: it still overlaps cluster one's copies, and a pause, a kill or the browser lands mid-copy.
LONG_COPY_ROWS = 60000


def client(deployment: Deployment, *args: str) -> dict:
    """``shift-client *args`` against the deployment's shift API: the migration it answers with."""
    out = shift_client(*args, url=deployment.shift_api.url)
    assert out.returncode == 0, f"shift-client {args}: {out.stderr}"
    data = json.loads(out.stdout) if out.stdout.strip() else {}
    return data.get("migration", data)


def migration(deployment: Deployment, mid: int) -> dict:
    return deployment.shift_api.migration(mid)


def wait_status(deployment: Deployment, mid: int, statuses: set[int], timeout: float) -> dict:
    """The migration once it reaches one of ``statuses``; fails at once at failed (10) or error (13)
    unless one of those is awaited."""
    def reached():
        m = migration(deployment, mid)
        assert m["status"] not in ({10, 13} - statuses), f"migration {mid} went to {m['status']}: {m['error_message']}"
        return m if m["status"] in statuses else None

    return wait_for(reached, timeout, f"migration {mid} to reach {statuses}", interval=0.3)


def new_database(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


def file_migration(deployment: Deployment, cluster: str, database: str, ddl: str) -> int:
    return client(deployment, "create", "--cluster", cluster, "--database", database, "--ddl", ddl,
                  "--requestor", "deployment-tests")["id"]


def prepared(deployment: Deployment, mid: int) -> dict:
    return wait_status(deployment, mid, {1}, 90)


def ti_of(deployment: Deployment, run_id: str, task_id: str, state: str) -> dict | None:
    """The task instance when it is in ``state``, else None."""
    for ti in deployment.task_instances("shift_migration", run_id):
        if ti["task_id"] == task_id and ti["state"] == state:
            return ti
    return None


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


def timed(timings: dict[str, float], name: str, since: float) -> float:
    """Seconds since ``since``, recorded in ``timings`` (printed with the topology's own timings)."""
    timings[name] = round(time.monotonic() - since, 1)
    return timings[name]


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
