"""The final word on a migration's run: its note ends with completed, canceled or failed.

A task cannot write its run's note (the Task SDK has no call for it), so an Airflow
listener does, in the scheduler, when a ``shift_migration`` run ends: the note the
claim wrote (cluster, table, DDL, people, link) gets a last line saying how the run
ended, read from the run's task states and its ``migration_ended`` XCom. The claim
at preparing happens before anyone approved the migration, so its "approved by (not
yet)" is replaced by the approver a later claim recorded (XCom ``claimed``).
Registered by the ``airflow.plugins`` entry point (``ShiftRunNotesPlugin``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)
DAG_ID = "shift_migration"


def outcome(states: dict[str, str], ended: list[str]) -> str:
    """How a run ended, in a few words, from its task states and the ``migration_ended`` XComs."""
    failed = sorted(task for task, state in states.items() if state == "failed")
    if failed:
        return f"**failed** ({', '.join(failed)}): see the task log and the shift migration"
    if any("canceled" in text for text in ended):
        return "**canceled**: the copy's triggers and shadow table were removed"
    if states.get("rename") == "success" or states.get("run_ddl") == "success":
        return "**completed**"
    if ended:
        return f"**ended**: {ended[0]}"
    return "**ended** without completing the migration (see the skipped tasks' reasons)"


NOT_YET_APPROVED = "approved by (not yet)"


def with_approver(note: str, claims: list[Any]) -> str:
    """The note with the approver a claim recorded in place of "approved by (not yet)"."""
    approved = [c for c in claims if isinstance(c, dict) and c.get("approved_by")]
    if not approved or NOT_YET_APPROVED not in note:
        return note
    newest = max(approved, key=lambda c: c.get("lock_version") or 0)
    return note.replace(NOT_YET_APPROVED, f"approved by {newest['approved_by']}", 1)


def _write_note(dag_run: Any) -> None:
    if getattr(dag_run, "dag_id", None) != DAG_ID:
        return
    from sqlalchemy.orm import object_session

    from airflow.utils.session import create_session

    # In the scheduler's own transaction when the run is attached to one: a second transaction
    # touching the run's rows would wait for the scheduler, which waits for this listener.
    session = object_session(dag_run)
    if session is not None:
        _note_in(session, dag_run)
        return
    with create_session() as session:
        from airflow.models.dagrun import DagRun

        run = session.query(DagRun).filter(DagRun.dag_id == DAG_ID, DagRun.run_id == dag_run.run_id).one()
        _note_in(session, run)


def _note_in(session: Any, run: Any) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel

    states = {ti.task_id: str(ti.state) for ti in session.query(TaskInstance).filter(
        TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run.run_id)}
    ended = [XComModel.deserialize_value(row) for row in session.query(XComModel).filter(
        XComModel.dag_id == DAG_ID, XComModel.run_id == run.run_id, XComModel.key == "migration_ended")]
    last = outcome(states, [e for e in ended if isinstance(e, str)])
    claims = [XComModel.deserialize_value(row) for row in session.query(XComModel).filter(
        XComModel.dag_id == DAG_ID, XComModel.run_id == run.run_id, XComModel.key == "claimed")]
    note = with_approver(run.note or "", claims)
    if last not in note:
        note = (note + "  \n" if note else "") + last
    if note != (run.note or ""):
        run.note = note


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    try:
        _write_note(dag_run)
    except Exception as exc:  # a note must never break the scheduler
        log.warning("could not write the final note of %s: %s", getattr(dag_run, "run_id", "?"), exc)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    on_dag_run_success(dag_run, msg)


class ShiftRunNotesPlugin(AirflowPlugin):
    name = "shift_run_notes"
    listeners = [sys.modules[__name__]]
