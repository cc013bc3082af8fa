"""shift_migration: one run per claimed migration, doing the step its status calls for."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, TaskGroup

from shift_provider.operators.base import RejectMigrationOperator
from shift_provider.operators.cancel import CancelOperator
from shift_provider.operators.copy import CopyOperator
from shift_provider.operators.pause import PauseOperator
from shift_provider.operators.prepare import (
    AdvanceOperator,
    CollectTableStatsOperator,
    DetectInstantDdlOperator,
    DryRunOperator,
    ValidateFinalInsertOperator,
)
from shift_provider.operators.rename import RenameOperator
from shift_provider.operators.route import ANY_CLUSTER, RouteMigrationOperator, cluster_task_id
from shift_provider.operators.run_ddl import RunDdlOperator
from shift_provider.settings import get_settings

settings = get_settings()
# Steps whose sub-steps are idempotent are retried; the copy is not (a failed copy
# goes to "error" for a human to resume, never silently again).
retrying = {"retries": 2, "retry_delay": timedelta(seconds=10), "retry_exponential_backoff": True}

with DAG(
    dag_id="shift_migration",
    schedule=None,
    catchup=False,
    max_active_runs=64,
    tags=["shift"],
    doc_md=__doc__ + """
Triggered by `shift_staged_migrations` with the claimed migration as its conf (as the
shift API listed it). `route` picks the step from the status:

| status | step | ends with |
|---|---|---|
| 0 preparing | `prepare`: validate final insert, dry run, detect instant DDL, table stats, advance | next_step (1) |
| 3 copy in progress, pt-osc | `copy.<cluster>`: pt-osc copy up to the swap (nothing for an instant ALTER) | next_step (4), or error (13) |
| 3 short run / CREATE / DROP | `run_ddl`: the DDL directly, final insert | complete (8) |
| 5 rename in progress | `rename`: swap (or the instant ALTER), triggers, trash, stats, final insert | complete (8) |
| 11 pausing | `pause`: stop the copy, keep its state | next_step (12) |
| 9 canceled | `cancel`: stop the copy, remove triggers and shadow table | - |

Run one step by hand: `airflow dags test shift_migration -c '<migration JSON>'`.
Copy progress: the copy task's XCom `copy_percentage` / `eta_seconds`.
""",
) as dag:
    route = RouteMigrationOperator(task_id="route", clusters=settings.clusters)

    with TaskGroup("prepare") as prepare:
        (
            ValidateFinalInsertOperator(task_id="validate_final_insert", **retrying)
            >> DryRunOperator(task_id="dry_run", **retrying)
            >> DetectInstantDdlOperator(task_id="detect_instant_ddl", **retrying)
            >> CollectTableStatsOperator(task_id="table_stats", **retrying)
            >> AdvanceOperator(task_id="advance", **retrying)
        )

    # One copy task per configured cluster, each running one copy at a time;
    # the shared pool caps copies across clusters.
    with TaskGroup("copy") as copy:
        for cluster in [*settings.clusters, None]:
            CopyOperator(task_id=cluster_task_id(cluster, settings.clusters) if cluster else ANY_CLUSTER,
                         pool=settings.copy_pool, max_active_tis_per_dag=1, retries=0)

    route >> [
        prepare,
        copy,
        RunDdlOperator(task_id="run_ddl", **retrying),
        RenameOperator(task_id="rename", **retrying),
        PauseOperator(task_id="pause", **retrying),
        CancelOperator(task_id="cancel", **retrying),
        RejectMigrationOperator(task_id="reject"),
    ]
