"""A run's facts from Airflow's metadata database, read in the api-server process.

The copy task pushes its progress as XComs while pt-osc runs (``copy_percentage``,
``eta_seconds``, ``checksum_percentage``...); reading them here, at each refresh of
the page, is what makes the console live where the UI's XCom tab is not. Only the
keys the console shows are read, with one query per kind of row for any number of runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shift_provider.console.summary import RunFacts

DAG_ID = "shift_migration"
# The XCom keys the console shows (pushed by the copy, the waits and the tasks ending a migration).
XCOM_KEYS = ("copy_percentage", "eta_seconds", "checksum_percentage", "copy_outcome", "waiting_reason",
             "waiting_for", "migration_ended")
IN_FLIGHT = ("queued", "running")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _facts(session: Any, runs: Iterable[Any]) -> list[RunFacts]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel

    runs = list(runs)
    if not runs:
        return []
    by_key = {(run.dag_id, run.run_id): RunFacts(
        dag_id=run.dag_id, run_id=run.run_id, state=str(run.state), conf=dict(run.conf or {}), note=run.note,
        start_date=_iso(run.start_date)) for run in runs}
    dag_ids = {dag_id for dag_id, _ in by_key}
    run_ids = [run_id for _, run_id in by_key]
    for ti in session.query(TaskInstance).filter(TaskInstance.dag_id.in_(dag_ids), TaskInstance.run_id.in_(run_ids)):
        facts = by_key.get((ti.dag_id, ti.run_id))
        if facts is not None:
            facts.tasks[ti.task_id] = str(ti.state) if ti.state is not None else None
    for row in session.query(XComModel).filter(XComModel.dag_id.in_(dag_ids), XComModel.run_id.in_(run_ids),
                                               XComModel.key.in_(XCOM_KEYS)):
        facts = by_key.get((row.dag_id, row.run_id))
        if facts is not None:
            facts.xcoms.setdefault(row.task_id, {})[row.key] = XComModel.deserialize_value(row)
    return list(by_key.values())


def run_facts(session: Any, dag_id: str, run_id: str) -> RunFacts | None:
    """One run's facts, or None when there is no such run."""
    from airflow.models.dagrun import DagRun

    run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one_or_none()
    return _facts(session, [run])[0] if run is not None else None


def runs_in_flight(session: Any, limit: int = 500) -> list[RunFacts]:
    """The shift_migration runs still going (queued or running, waits included), oldest first."""
    from airflow.models.dagrun import DagRun

    runs = (session.query(DagRun).filter(DagRun.dag_id == DAG_ID, DagRun.state.in_(IN_FLIGHT))
            .order_by(DagRun.run_after, DagRun.run_id).limit(limit))
    return _facts(session, runs)
