"""End-to-end helpers: the sensor DAG claims, then the runs it queued are run too.

``dag.test()`` of the sensor DAG only queues the shift_migration runs its
TriggerDagRunOperator creates; these helpers take their conf and run them
through ``dag.test()`` as well (the queued run itself is removed).
"""

from __future__ import annotations

from typing import Any

from tests.support.airflow import run_dag


def queued_migration_runs() -> list[tuple[str, dict[str, Any]]]:
    """(run_id, conf) of the queued shift_migration runs, removed from the metadata DB."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == "shift_migration", DagRun.state == "queued").all()
        found = [(run.run_id, dict(run.conf or {})) for run in runs]
        for run in runs:
            session.delete(run)
    return found


def claim_and_run() -> list[tuple[str, Any]]:
    """One sensor DAG run, then every shift_migration run it triggered: [(run_id, DagRun)]."""
    sensor_run = run_dag("shift_staged_migrations")
    assert str(sensor_run.state) == "success", f"sensor DAG run ended {sensor_run.state}"
    return [(run_id, run_dag("shift_migration", conf)) for run_id, conf in queued_migration_runs()]


def spawn_migration_run(conf: dict[str, Any], workdir) -> Any:
    """Run one shift_migration run in its own process (``airflow dags test``), as another worker would.

    It gets a private copy of the (migrated) metadata database, so it and this
    process never contend for one SQLite file.
    """
    import json
    import subprocess
    from pathlib import Path

    from tests.support.airflow import private_airflow_env

    home = Path(workdir)
    env = private_airflow_env(home)
    log = open(home / "run.log", "wb")  # noqa: SIM115 - owned by the process object
    process = subprocess.Popen(
        [str(Path(__file__).resolve().parents[2] / ".venv/bin/airflow"), "dags", "test", "shift_migration",
         "-c", json.dumps(conf)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    process.log_path = home / "run.log"
    return process


def claim_only() -> list[tuple[str, dict[str, Any]]]:
    """One sensor DAG run; returns the (run_id, conf) it queued, without running them."""
    sensor_run = run_dag("shift_staged_migrations")
    assert str(sensor_run.state) == "success", f"sensor DAG run ended {sensor_run.state}"
    return queued_migration_runs()
