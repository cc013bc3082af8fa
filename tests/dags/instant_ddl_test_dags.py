"""Test-only DAGs for instant DDL (conf = the migration payload); retries off.

``shift_test_detect_instant_ddl`` is prepare's detection alone.
``shift_test_rename_fail_after_instant_alter`` stops with an injected fault right after
the instant ALTER ran on the live table and before it is recorded as done (the worst
moment for a retry); the fault point is a DAG-file constant.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from shift_provider.engine.instant_ddl import SUBSTEP
from shift_provider.operators.prepare import DetectInstantDdlOperator
from shift_provider.operators.rename import RenameOperator

_COMMON = {"schedule": None, "start_date": datetime(2026, 1, 1), "catchup": False,
           "default_args": {"retries": 0}, "tags": ["shift-test"]}


class InstantAlterFault(RuntimeError):
    """A crash stand-in: retryable, like a lost worker or connection."""


class FaultyInstantRenameOperator(RenameOperator):
    def after_substep(self, name, state) -> None:
        if name == SUBSTEP:
            raise InstantAlterFault(f"injected fault after rename sub-step {name!r}")


with DAG("shift_test_detect_instant_ddl", **_COMMON):
    DetectInstantDdlOperator(task_id="detect_instant_ddl")

with DAG(f"shift_test_rename_fail_after_{SUBSTEP}", **_COMMON):
    FaultyInstantRenameOperator(task_id="rename")
