"""Test-only DAGs: one per step operator of issue 5 (copy, pause, cancel), conf = the migration."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from shift_provider.operators.cancel import CancelOperator
from shift_provider.operators.copy import CopyOperator
from shift_provider.operators.pause import PauseOperator

_COMMON = {"schedule": None, "start_date": datetime(2026, 1, 1), "catchup": False, "tags": ["shift-test"]}

with DAG("shift_test_copy", **_COMMON):
    CopyOperator(task_id="copy", retries=0, stop_grace_seconds=3)

with DAG("shift_test_pause", **_COMMON):
    PauseOperator(task_id="pause", retries=0, release_timeout=30)

with DAG("shift_test_cancel", **_COMMON):
    CancelOperator(task_id="cancel", retries=0, release_timeout=30)
