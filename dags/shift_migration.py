"""shift_migration: one run per migration, following it from prepare to rename."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, TaskGroup

from shift_provider.contract.codes import Status
from shift_provider.operators.await_human import AwaitHumanOperator
from shift_provider.operators.copy import CopyOperator
from shift_provider.operators.prepare import (
    AdvanceOperator,
    CollectTableStatsOperator,
    DetectInstantDdlOperator,
    DryRunOperator,
    ValidateFinalInsertOperator,
)
from shift_provider.operators.rename import RenameOperator
from shift_provider.operators.run_ddl import RunDdlOperator
from shift_provider.settings import get_settings

settings = get_settings()
# Steps whose sub-steps are idempotent are retried; the copy is not (a failed copy
# goes to "error" for a human to resume, never silently again).
retrying = {"retries": 2, "retry_delay": timedelta(seconds=10), "retry_exponential_backoff": True}
# Every task decides for itself whether its step applies (and ends skipped with the reason
# when not): a run adopted at a later status starts at that step.
each = {"trigger_rule": "none_failed"}

with DAG(
    dag_id="shift_migration",
    schedule=None,
    catchup=False,
    max_active_runs=512,  # waiting runs hold no worker slot
    tags=["shift"],
    doc_md=__doc__ + """
Started by `shift_staged_migrations`: run `mig-<id>` when it claims a new migration
(preparing), run `mig-<id>-<lock_version>` when it adopts one staged at a later status
that no run waits for. The conf is the migration as the API listed it; the run note
names the cluster, table, DDL, requestor and approver, and links to shift.

| task | when | does | ends with |
|---|---|---|---|
| `prepare.*` | run started at preparing (0) | validate final insert, dry run, detect instant DDL, table stats, advance | next_step (1) |
| `await_start` | 1, 2, 14 | deferred on the triggerer until a human starts it (3, staged): claims it | - |
| `copy` | 3, pt-osc ALTER | pt-osc up to the swap (nothing for an instant ALTER); a pause (11) moves it to 12 and defers until resume/cancel | next_step (4), or error (13) |
| `run_ddl` | 3, short run / CREATE / DROP | the DDL directly, final insert | complete (8) |
| `await_rename` | 4 | deferred until a human renames it (5, staged): claims it | - |
| `rename` | 5 | swap (or the instant ALTER), triggers, trash, stats, final insert | complete (8) |

A cancel while waiting or copying is claimed by the task that sees it, which cleans up
this migration's triggers and shadow table; the tasks after it end skipped. A task that
does not apply ends skipped with the reason (for a pt-osc ALTER, `run_ddl`). Clearing a
failed `copy` of a migration at error (13) resumes it; clearing any task of a migration
completed, failed or canceled in shift fails at once, saying so, without any SQL.
Copy progress, live: the run's "Migration" tab (and the "Shift" page for all migrations in flight);
also the copy task's XCom `copy_percentage` / `eta_seconds`.
""",
) as dag:
    with TaskGroup("prepare") as prepare:
        (
            ValidateFinalInsertOperator(task_id="validate_final_insert", **retrying, **each)
            >> DryRunOperator(task_id="dry_run", **retrying, **each)
            >> DetectInstantDdlOperator(task_id="detect_instant_ddl", **retrying, **each)
            >> CollectTableStatsOperator(task_id="table_stats", **retrying, **each)
            >> AdvanceOperator(task_id="advance", **retrying, **each)
        )
    await_start = AwaitHumanOperator(
        task_id="await_start", after=Status.PREPARING,
        waits_at=(Status.PREPARING, Status.AWAITING_APPROVAL, Status.AWAITING_START, Status.ENQUEUED),
        acts_on=Status.COPY_IN_PROGRESS, **retrying, **each)
    # The shared pool caps copies running at once across clusters.
    copy = CopyOperator(task_id="copy", pool=settings.copy_pool, retries=0, **each)
    run_ddl = RunDdlOperator(task_id="run_ddl", **retrying, **each)
    await_rename = AwaitHumanOperator(
        task_id="await_rename", after=Status.COPY_IN_PROGRESS, waits_at=(Status.AWAITING_RENAME,),
        acts_on=Status.RENAME_IN_PROGRESS, **retrying, **each)
    rename = RenameOperator(task_id="rename", **retrying, **each)

    prepare >> await_start >> [copy, run_ddl]
    copy >> await_rename >> rename
