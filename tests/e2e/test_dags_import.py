"""The project's DAGs import cleanly and are wired as documented."""

from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import REPO


def test_no_import_errors_reported_by_airflow(airflow_home):
    env = dict(os.environ, AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"))
    subprocess.run([str(REPO / ".venv/bin/airflow"), "dags", "reserialize"], env=env, capture_output=True,
                   timeout=300, check=True)
    def airflow_json(*args):
        out = subprocess.run([str(REPO / ".venv/bin/airflow"), *args, "-o", "json"], env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])  # warnings may precede the JSON

    assert airflow_json("dags", "list-import-errors") == []
    dag_ids = {d["dag_id"] for d in airflow_json("dags", "list")}
    assert {"shift_staged_migrations", "shift_migration"} <= dag_ids


def test_dag_shapes():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO / "dags"))
    assert bag.import_errors == {}
    staged = bag.get_dag("shift_staged_migrations")
    assert staged.max_active_runs == 1 and staged.doc_md
    assert list(staged.task_dict) == ["wait_for_staged", "claim", "trigger_migration"]
    migration = bag.get_dag("shift_migration")
    assert migration.doc_md and "route" not in migration.task_dict
    # One run per migration: its tasks follow the migration's life, in order.
    assert list(migration.task_dict) == [
        "prepare.validate_final_insert", "prepare.dry_run", "prepare.detect_instant_ddl", "prepare.table_stats",
        "prepare.advance", "await_start", "copy", "run_ddl", "await_rename", "rename"]
    assert migration.task_dict["await_start"].downstream_task_ids == {"copy", "run_ddl"}
    assert migration.task_dict["copy"].downstream_task_ids == {"await_rename"}
    assert migration.task_dict["await_rename"].downstream_task_ids == {"rename"}
    assert migration.task_dict["run_ddl"].downstream_task_ids == set()
    copy = migration.task_dict["copy"]
    assert copy.pool == "shift_copy" and copy.retries == 0
