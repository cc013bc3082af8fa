"""Run DAGs through Airflow itself (``dag.test()``) and read back what they left.

The DAGs come from the configured DAGs folder (set up in conftest), because
``dag.test()`` only runs DAGs Airflow has serialized from there.
"""

from __future__ import annotations

import os
import sys
import time
from functools import lru_cache
from typing import Any


# dag.test() sleeps a whole second each time its loop finds no task to run yet (a skip
# still propagating, a task between states): a run of shift_migration, whose tasks skip
# what does not apply, spent most of its time there. Its loop polls the metadata DB,
# so asking again after a short pause changes nothing but the wait.
DAG_TEST_IDLE_SECONDS = 0.05
_real_sleep = time.sleep


def _sleep(seconds: float) -> None:
    """``time.sleep``, except that a sleep called from dag.test()'s own loop is capped."""
    if seconds > DAG_TEST_IDLE_SECONDS and sys._getframe(1).f_code is _dag_test_code():
        seconds = DAG_TEST_IDLE_SECONDS
    _real_sleep(seconds)


@lru_cache(maxsize=1)
def _dag_test_code():
    from airflow.sdk.definitions.dag import DAG

    return DAG.test.__code__


def shorten_dag_test_idle() -> None:
    """Cap dag.test()'s idle wait in this process (idempotent). dag.test() imports ``time`` inside the
    function, so ``time.sleep`` itself is wrapped; every other caller sleeps exactly as asked."""
    if time.sleep is not _sleep:
        _dag_test_code()
        time.sleep = _sleep


@lru_cache(maxsize=1)
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])


def run_dag(dag_id: str, conf: dict[str, Any] | None = None, mark_success_pattern: str | None = None):
    """Run one DAG run in process; returns the finished DagRun.

    ``mark_success_pattern``: tasks whose id matches it are marked success without running.
    """
    bag = dag_bag()
    dag = bag.get_dag(dag_id)
    assert dag is not None, f"no DAG {dag_id!r}; import errors: {bag.import_errors}"
    shorten_dag_test_idle()
    return dag.test(run_conf=conf or {}, mark_success_pattern=mark_success_pattern)


def task_states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def xcoms(dag_run) -> dict[str, dict[str, Any]]:
    """{task_id: {key: value}} of one run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    result: dict[str, dict[str, Any]] = {}
    with create_session() as session:
        for row in session.query(XComModel).filter(XComModel.dag_id == dag_run.dag_id,
                                                   XComModel.run_id == dag_run.run_id):
            result.setdefault(row.task_id, {})[row.key] = XComModel.deserialize_value(row)
    return result


def private_airflow_env(workdir) -> dict[str, str]:
    """The environment for a second Airflow process with its own copy of the metadata DB.

    Two processes writing one SQLite file (and a killed one among them) can leave
    it "malformed"; a process that stands for another worker gets a consistent
    copy (SQLite's backup API) in ``workdir`` instead.
    """
    import sqlite3
    from pathlib import Path

    home = Path(workdir)
    home.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db")
    target = sqlite3.connect(home / "airflow.db")
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    return dict(os.environ, AIRFLOW_HOME=str(home),
                AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}")
