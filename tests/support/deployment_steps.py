"""What the deployment tests do to a started ``Deployment``: play the human through ``shift-client``,
read shift's API and Airflow's task instances, file and prepare migrations.

Shared by every module of ``tests/deployment`` (each starts its own topology through the
``deployment`` fixture of ``tests/deployment/conftest.py``).
"""

from __future__ import annotations

import json
import uuid

from tests.support.deployment import Deployment, wait_for
from tests.support.shift_api import shift_client


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
