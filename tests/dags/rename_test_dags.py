"""Test-only DAGs wrapping the rename operator (conf = the migration payload).

``shift_test_rename`` is the real step. ``shift_test_rename_fail_after_<sub-step>``
stops with an injected fault right after that sub-step acted on the database and
before it is recorded as done: the worst moment for a retry. The fault point is a
DAG-file constant, never something a migration payload can set. Retries are off.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from shift_provider.operators.rename import SUBSTEPS, RenameOperator

_COMMON = {"schedule": None, "start_date": datetime(2026, 1, 1), "catchup": False,
           "default_args": {"retries": 0}, "tags": ["shift-test"]}


class InjectedFault(RuntimeError):
    """A crash stand-in: retryable, like a lost worker or connection."""


class FaultyRenameOperator(RenameOperator):
    def __init__(self, *, fail_after: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fail_after = fail_after

    def after_substep(self, name, state) -> None:
        if name == self.fail_after:
            raise InjectedFault(f"injected fault after rename sub-step {name!r}")


with DAG("shift_test_rename", **_COMMON):
    RenameOperator(task_id="rename")

with DAG("shift_test_rename_by_estimate", **_COMMON):
    RenameOperator(task_id="rename", exact_count_max_rows=0)  # row counts by information_schema estimate

for _substep in SUBSTEPS:
    with DAG(f"shift_test_rename_fail_after_{_substep}", **_COMMON):
        FaultyRenameOperator(task_id="rename", fail_after=_substep)
