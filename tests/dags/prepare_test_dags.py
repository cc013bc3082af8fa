"""Test-only DAGs wrapping the prepare and run-DDL operators (conf = the migration payload).

Retries are off so a failure is final at once and reported to shift by the operator.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, chain

from shift_provider.operators.prepare import (
    AdvanceOperator,
    CollectTableStatsOperator,
    DryRunOperator,
    ValidateFinalInsertOperator,
)
from shift_provider.operators.run_ddl import RunDdlOperator

_COMMON = {"schedule": None, "start_date": datetime(2026, 1, 1), "catchup": False,
           "default_args": {"retries": 0}, "tags": ["shift-test"]}

with DAG("shift_test_prepare", **_COMMON):
    chain(
        ValidateFinalInsertOperator(task_id="validate_final_insert"),
        DryRunOperator(task_id="dry_run"),
        CollectTableStatsOperator(task_id="collect_table_stats"),
        AdvanceOperator(task_id="advance"),
    )

with DAG("shift_test_dry_run", **_COMMON):
    DryRunOperator(task_id="dry_run")

with DAG("shift_test_validate_final_insert", **_COMMON):
    ValidateFinalInsertOperator(task_id="validate_final_insert")

with DAG("shift_test_run_ddl", **_COMMON):
    RunDdlOperator(task_id="run_ddl")
