"""What one shift_migration run knows about its migration between tasks: its claims and its end.

A run follows one migration through its life, claiming it several times (at preparing
by the sensor DAG, then at copy, pause/resume, rename, by its own tasks). Each claim a
task makes is pushed as XCom ``claimed`` (the lifecycle fields of unstage's answer);
a later task acts on the newest (highest lock_version), with the target (table, host,
port...) from the run's conf. A task that ends the migration (completed, canceled,
handed back) pushes ``migration_ended``: the tasks after it end skipped, saying so.
"""

from __future__ import annotations

from typing import Any

from shift_provider.contract.models import LIFECYCLE_FIELDS, claimed_payload

CLAIM_KEY = "claimed"
ENDED_KEY = "migration_ended"
# What a later claim may change besides the lifecycle: the runtype a human chose at approval
# (the run's conf was listed before it), and who approved (the run note).
DECIDED_FIELDS = ("runtype", "approved_by")
# The tasks that claim a migration for their run (and push CLAIM_KEY).
CLAIMANTS = ("await_start", "copy", "await_rename")


def _pull(context: Any, key: str, task_ids: list[str]) -> list[Any]:
    values = context["ti"].xcom_pull(task_ids=task_ids, key=key)
    if values is None:
        return []
    return [v for v in (values if isinstance(values, list) else [values]) if v is not None]


def dag_task_ids(context: Any) -> list[str]:
    task = context["ti"].task
    dag = getattr(task, "dag", None)
    return list(dag.task_ids) if dag is not None else [task.task_id]


def latest_claim(context: Any) -> dict[str, Any] | None:
    """The newest claim a task of this run made, or None (the conf is the run's claim)."""
    ids = [t for t in dag_task_ids(context) if t in CLAIMANTS]
    claims = [c for c in _pull(context, CLAIM_KEY, ids) if isinstance(c, dict)] if ids else []
    if not claims:
        return None
    return max(claims, key=lambda c: c.get("lock_version") or 0)


def record_claim(context: Any, claimed: dict[str, Any]) -> None:
    fields = (*LIFECYCLE_FIELDS, *DECIDED_FIELDS)
    context["ti"].xcom_push(key=CLAIM_KEY, value={k: claimed[k] for k in fields if k in claimed})


def with_claim(payload: dict[str, Any], claim: dict[str, Any]) -> dict[str, Any]:
    """The run's conf with a later claim's lifecycle, and the runtype once a human decided it."""
    merged = claimed_payload(payload, claim)
    if claim.get("runtype") not in (None, 0, "0", ""):  # undecided stays as `staged` served it (long)
        merged["runtype"] = claim["runtype"]
    if claim.get("approved_by"):
        merged["approved_by"] = claim["approved_by"]
    return merged


def ended(context: Any) -> str | None:
    """How an earlier task of this run ended the migration, or None."""
    values = [v for v in _pull(context, ENDED_KEY, dag_task_ids(context)) if isinstance(v, str)]
    return values[0] if values else None


def mark_ended(context: Any, how: str) -> None:
    context["ti"].xcom_push(key=ENDED_KEY, value=how)
