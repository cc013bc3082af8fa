"""A copy pt-osc cannot finish leaves the live table as it found it: no trigger to break the application.

pt-osc's triggers apply every application write to the shadow table too, in the
writer's own transaction; when the shadow table cannot take the row (a NOT NULL
column without a default, a narrower column) the application's INSERT fails. So a
copy that failed on the ALTER or the data removes them before it reports error (13).
"""

from __future__ import annotations

import pytest

from shift_provider.contract.codes import Status
from tests.operators.test_copy import COPY_DAG, local_log, start_copy
from tests.operators.test_copy import copy_env  # noqa: F401 - fixture
from tests.support.airflow import run_dag, task_states
from tests.support.tables import create_sample_table, triggers_on


def application_insert(primary, database: str) -> None:
    """What the application does: an INSERT naming the columns it knows (raises if the table refuses it)."""
    primary.execute(f"INSERT INTO `{database}`.t (name, amount, created) VALUES ('app', 1, NOW())")


@pytest.mark.parametrize("ddl, reason", [
    ("ALTER TABLE t ADD COLUMN region INT NOT NULL, ADD INDEX iregion (region)", "region"),
    ("ALTER TABLE t MODIFY name VARCHAR(4) NOT NULL", "name"),
])
def test_a_failed_copy_removes_its_triggers_and_says_why(copy_env, shift_api, primary, database, ddl, reason):
    create_sample_table(primary, database, "t", 3000)
    conf = start_copy(shift_api, database, "t", ddl=ddl)
    run = run_dag(COPY_DAG, conf)
    assert task_states(run) == {"copy": "failed"}
    migration = shift_api.migration(conf["id"])
    assert migration["status"] == Status.ERROR, migration
    assert triggers_on(primary, database) == []
    application_insert(primary, database)  # right after the failed copy: the application writes as before
    message = migration["error_message"]
    assert reason in message and "Copying rows caused a MySQL error" in message, message  # its reason line
    assert "Not dropping" not in message and "DROP TABLE" not in message, message
    # pt-osc's "To drop the new table, execute: ..." / "Successfully altered" is not what happened.
    assert "not swapped yet: the rename step does that" in local_log(copy_env, conf["id"])
    assert "triggers" in shift_api.log_file(conf["id"])
    assert shift_api.state(conf["id"]).triggers == []


def test_duplicates_of_a_new_unique_key_refuse_the_copy_before_pt_osc(copy_env, shift_api, primary, database):
    """Duplicates written after prepare: the copy checks again, before any trigger exists."""
    create_sample_table(primary, database, "t", 3000)  # amount = seq % 1000: every value three times
    conf = start_copy(shift_api, database, "t", ddl="ALTER TABLE t ADD UNIQUE KEY uamount (amount)")
    run = run_dag(COPY_DAG, conf)
    assert task_states(run) == {"copy": "failed"}
    migration = shift_api.migration(conf["id"])
    assert migration["status"] == Status.ERROR
    assert "before the copy" in migration["error_message"] and "(3 rows)" in migration["error_message"]
    assert triggers_on(primary, database) == []
    application_insert(primary, database)
