"""What the console tells a DBA about one migration's run, from plain facts (no I/O here).

The run's facts (``RunFacts``: its state, conf, task states and XComs, read by ``facts``)
and shift's answer (``ShiftAnswer``, from ``shift_status``) become one JSON-ready dict:
the shift status, the step the run is at, the copy (or checksum) progress with its ETA,
what the run waits for, the next human action and the links. Shift says where the
migration is; the run says what the runner is doing about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shift_provider.contract.codes import Status
from shift_provider.contract.staged_ids import addressable_id

# The tasks of shift_migration in the order a migration meets them.
STEP_ORDER = (
    "prepare.validate_final_insert", "prepare.dry_run", "prepare.detect_instant_ddl", "prepare.table_stats",
    "prepare.advance", "await_start", "copy", "run_ddl", "await_rename", "rename",
)
# Task states of a step the run is at (not finished, not yet to come).
ACTIVE_STATES = ("running", "deferred", "queued", "scheduled", "up_for_retry", "up_for_reschedule", "restarting")
STEP_LABELS = {
    "await_start": "waiting for the start",
    "copy": "copying rows (pt-osc)",
    "run_ddl": "running the DDL",
    "await_rename": "waiting for the rename",
    "rename": "renaming",
}
# What a human does next, by shift status (the statuses where the runner waits for one).
NEXT_ACTION = {
    Status.AWAITING_APPROVAL: "a human approves it in shift (long, short or nocheckalter run)",
    Status.AWAITING_START: "a human clicks Start in shift",
    Status.ENQUEUED: "it waits in shift's queue (or a human clicks Start in shift)",
    Status.AWAITING_RENAME: "a human clicks Rename in shift",
    Status.PAUSED: "a human clicks Resume in shift (or Cancel)",
    Status.ERROR: "a human reads the error, then clicks Resume in shift (or clears the failed copy task in Airflow)",
    Status.FAILED: "none can continue it: read its error in shift and file a new migration",
}
DDL_CLIP = 300


@dataclass
class RunFacts:
    """One DAG run as Airflow's metadata database holds it."""

    dag_id: str
    run_id: str
    state: str
    conf: dict[str, Any]
    note: str | None = None
    start_date: str | None = None
    tasks: dict[str, str | None] = field(default_factory=dict)  # task_id -> state
    xcoms: dict[str, dict[str, Any]] = field(default_factory=dict)  # task_id -> key -> value

    @property
    def migration_id(self) -> int | None:
        """The migration the run is about (its conf is the migration as shift listed it)."""
        return addressable_id(self.conf)


@dataclass
class ShiftAnswer:
    """shift's ``show`` answer for the migration, or why there is none."""

    migration: dict[str, Any] | None = None
    actions: list[str] = field(default_factory=list)
    error: str | None = None  # the API could not be asked, or answered an error
    deleted: bool = False  # shift answered 404


def status_name(code: Any) -> str:
    """``awaiting start``: a shift status as a DBA reads it."""
    try:
        return Status(int(code)).name.lower().replace("_", " ")
    except (TypeError, ValueError):
        return f"status {code}"


def current_step(facts: RunFacts) -> dict[str, Any] | None:
    """The first task, in the migration's order, that is not finished: where the run is."""
    order = [t for t in STEP_ORDER if t in facts.tasks] + sorted(t for t in facts.tasks if t not in STEP_ORDER)
    for task_id in order:
        state = facts.tasks[task_id]
        if state in ACTIVE_STATES:
            label = STEP_LABELS.get(task_id) or f"preparing: {task_id.split('.', 1)[-1].replace('_', ' ')}"
            return {"task_id": task_id, "state": state, "label": label}
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def progress(facts: RunFacts, shift: ShiftAnswer) -> dict[str, Any] | None:
    """The copy's progress, then the checksum's once it verifies; None before any copy."""
    copied = facts.xcoms.get("copy", {})
    copy_percent = _number(copied.get("copy_percentage"))
    if copy_percent is None and shift.migration is not None:
        copy_percent = _number(shift.migration.get("copy_percentage"))
    checksum_percent = _number(copied.get("checksum_percentage"))
    if copy_percent is None and checksum_percent is None:
        return None
    phase = "checksum" if checksum_percent is not None else "copy"
    running = facts.tasks.get("copy") == "running"
    return {
        "phase": phase,
        "percent": checksum_percent if phase == "checksum" else copy_percent,
        "copy_percent": copy_percent,
        "checksum_percent": checksum_percent,
        "eta_seconds": _number(copied.get("eta_seconds")) if running else None,
        "outcome": copied.get("copy_outcome"),
    }


def waiting(facts: RunFacts, step: dict[str, Any] | None, status: Status | None) -> str | None:
    """Why the run is not moving on its own right now, in a sentence; None when it works."""
    if step is not None:
        said = facts.xcoms.get(step["task_id"], {})
        if step["state"] == "deferred" and said.get("waiting_for"):
            return f"waiting for {said['waiting_for']}"
        if step["task_id"] == "copy" and step["state"] == "running" and said.get("waiting_reason"):
            return f"pt-osc waits: {said['waiting_reason']}"
    if status in NEXT_ACTION:
        return f"{status_name(status)}: {NEXT_ACTION[status]}"
    return None


def summarize(facts: RunFacts, shift: ShiftAnswer, shift_url: str | None) -> dict[str, Any]:
    """Everything the Migration view shows, JSON-ready."""
    conf = facts.conf
    migration = shift.migration or {}
    code = migration.get("status")
    try:
        status = Status(int(code)) if code is not None else None
    except (TypeError, ValueError):
        status = None
    step = current_step(facts)
    ddl = str(conf.get("ddl_statement") or "")
    ended = next((v["migration_ended"] for v in facts.xcoms.values() if isinstance(v.get("migration_ended"), str)),
                 None)
    return {
        "dag_id": facts.dag_id,
        "run_id": facts.run_id,
        "run_state": facts.state,
        "run_started": facts.start_date,
        "run_note": facts.note,
        "migration": {
            "id": facts.migration_id,
            "cluster": conf.get("cluster_name"),
            "database": conf.get("database"),
            "table": conf.get("table"),
            "ddl": ddl if len(ddl) <= DDL_CLIP else ddl[:DDL_CLIP] + "...",
            "requestor": conf.get("requestor"),
            "approver": migration.get("approved_by") or conf.get("approved_by"),
        },
        "status": None if code is None else {"code": code, "name": status_name(code)},
        "error_message": migration.get("error_message") or None,
        "shift_error": shift.error,
        "deleted_in_shift": shift.deleted,
        "step": step,
        "progress": progress(facts, shift),
        "waiting": waiting(facts, step, status),
        "next_action": NEXT_ACTION.get(status) if status is not None else None,
        "available_actions": list(shift.actions),
        "ended": ended,
        "links": {"shift": shift_url},
    }
