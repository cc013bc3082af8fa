"""RunDdlOperator (status 3: short runs, CREATE, DROP) on real MariaDB and the real shift API, via dag.test()."""

from __future__ import annotations

import re

import pytest
import yaml

from shift_provider.engine.final_insert import BOOKKEEPING_DB, MARKER_TABLE
from tests.support.airflow import run_dag, task_states
from tests.support.tables import columns_of, create_sample_table, q, tables_in, triggers_on

TRASH = "_pending_drops"
TIMESTAMPED = re.compile(r"^\d{17}_(?P<table>.+)$")


@pytest.fixture
def env(primary, database, shift_api, shift_settings, airflow_home):
    env = Env(primary, database, shift_api, shift_settings)
    env.settings()
    yield env
    primary.execute(f"DROP DATABASE IF EXISTS {q(TRASH)}")


class Env:
    def __init__(self, primary, database, api, settings):
        self.primary, self.database, self.api, self.settings = primary, database, api, settings

    def started(self, ddl: str, final_insert: str = "", runtype: str = "short") -> dict:
        """A migration driven to 3 (copy in progress) and claimed: the DAG run's conf."""
        created = self.api.create(ddl=ddl, database=self.database, final_insert=final_insert)
        self.api.drive_to_start(created["id"], runtype=runtype)
        conf = self.api.claim(created["id"])
        assert conf["status"] == 3
        return conf

    def run(self, conf: dict) -> str:
        return task_states(run_dag("shift_test_run_ddl", conf))["run_ddl"]

    def status(self, migration_id: int) -> int:
        return self.api.migration(migration_id)["status"]

    def count(self, table: str, where: str = "1") -> int:
        return self.primary.query(f"SELECT COUNT(*) FROM {q(self.database)}.{q(table)} WHERE {where}")[0][0]

    def state(self, migration_id: int) -> dict:
        response = self.api.request("GET", "migrations/get_file", params={"migration_id": migration_id,
                                                                           "file_type": "1"})
        return yaml.safe_load(response.json()["contents"])

    def write_state(self, migration_id: int, state: dict) -> None:
        response = self.api.request("POST", "migrations/write_file", {
            "migration_id": migration_id, "file_type": 1, "contents": yaml.safe_dump(state)})
        assert response.status_code == 200, response.text

    def marker_rows(self, migration_id: int, table: str) -> int:
        """Final-insert markers of this migration (keyed by id and `db.table`; ids restart per test API)."""
        return self.primary.query(f"SELECT COUNT(*) FROM {q(BOOKKEEPING_DB)}.{q(MARKER_TABLE)} "
                                  "WHERE migration_id = %s AND target = %s",
                                  (migration_id, f"{self.database}.{table}"))[0][0]


def test_short_run_alter_changes_the_schema_and_inserts_once(env):
    create_sample_table(env.primary, env.database, "employees", 100)
    final = "INSERT INTO employees (name, amount, created) VALUES ('after-alter', 42, NOW())"
    conf = env.started("ALTER TABLE employees ADD COLUMN salary INT NOT NULL DEFAULT 7", final_insert=final)
    assert env.run(conf) == "success"
    assert columns_of(env.primary, env.database, "employees")[-1] == "salary"
    assert env.count("employees", "name = 'after-alter' AND salary = 7") == 1
    assert env.count("employees") == 101
    assert env.status(conf["id"]) == 8
    assert {"run_ddl:ddl", "run_ddl:final_insert"} <= set(env.state(conf["id"])["steps_done"])
    # Cleared and re-run after it completed: refused at once (completed in shift), no second final insert.
    assert env.run(conf) == "failed"
    assert env.count("employees") == 101
    assert env.marker_rows(conf["id"], "employees") == 1
    assert env.status(conf["id"]) == 8


def test_rerun_after_a_crash_between_the_alter_and_its_record_does_not_alter_twice(env):
    """The worker died after the ALTER ran but before the state said so; the final insert had not run."""
    from shift_provider.hooks.cluster import ShiftClusterHook
    from shift_provider.operators.run_ddl import SCHEMA_BEFORE
    from shift_provider.mysql.table_definition import definition_hash
    from shift_provider.contract.models import Migration
    from shift_provider.settings import get_settings

    create_sample_table(env.primary, env.database, "employees", 10)
    conf = env.started("ALTER TABLE employees ADD COLUMN salary INT",
                       final_insert="INSERT INTO employees (name, amount, created, salary) VALUES ('x', 1, NOW(), 9)")
    hook = ShiftClusterHook(Migration.from_payload(conf), get_settings())
    before = definition_hash(hook, env.database, "employees")
    env.write_state(conf["id"], {"steps_done": [SCHEMA_BEFORE + before, "run_ddl:ddl_started"]})
    env.primary.execute(f"ALTER TABLE {q(env.database)}.employees ADD COLUMN salary INT")  # what the dead worker did
    assert env.run(conf) == "success"  # a second ADD COLUMN would fail with a duplicate column
    assert columns_of(env.primary, env.database, "employees").count("salary") == 1
    assert env.count("employees", "salary = 9") == 1
    assert env.status(conf["id"]) == 8


def test_a_started_alter_recorded_by_the_earlier_fingerprint_is_not_compared_and_runs(env):
    """The earlier version recorded another hash ("schema_before="): compared with today's, it would always
    differ and the ALTER would be taken as done. Not compared: the ALTER runs (here it had not run yet)."""
    create_sample_table(env.primary, env.database, "employees", 10)
    conf = env.started("ALTER TABLE employees ADD COLUMN salary INT")
    env.write_state(conf["id"], {"steps_done": ["run_ddl:schema_before=" + "0" * 32, "run_ddl:ddl_started"]})
    assert env.run(conf) == "success"
    assert "salary" in columns_of(env.primary, env.database, "employees")
    assert env.status(conf["id"]) == 8


def test_create_table_with_a_reserved_word_name(env):
    conf = env.started("CREATE TABLE `order` (id INT PRIMARY KEY, note VARCHAR(20))",
                       final_insert="INSERT INTO `order` (id, note) VALUES (1, 'first')")
    assert env.run(conf) == "success"
    assert tables_in(env.primary, env.database) == ["order"]
    assert env.primary.query(f"SELECT id, note FROM {q(env.database)}.`order`") == [(1, "first")]
    assert env.status(conf["id"]) == 8
    # Re-run after completion: refused at once (completed in shift), no second insert.
    assert env.run(conf) == "failed"
    assert env.count("order") == 1


def test_create_rerun_after_a_crash_right_after_the_create(env):
    conf = env.started("CREATE TABLE `my-table` (id INT PRIMARY KEY)",
                       final_insert="INSERT INTO `my-table` VALUES (5)")
    env.write_state(conf["id"], {"steps_done": ["run_ddl:ddl_started"]})
    env.primary.execute(f"CREATE TABLE {q(env.database)}.`my-table` (id INT PRIMARY KEY)")
    assert env.run(conf) == "success"
    assert env.count("my-table") == 1
    assert env.status(conf["id"]) == 8


def test_create_of_a_table_someone_else_made_fails(env):
    conf = env.started("CREATE TABLE sneaky (id INT PRIMARY KEY)", final_insert="INSERT INTO sneaky VALUES (1)")
    env.primary.execute(f"CREATE TABLE {q(env.database)}.sneaky (id INT PRIMARY KEY, other INT)")
    assert env.run(conf) == "failed"
    migration = env.api.migration(conf["id"])
    assert migration["status"] == 10 and "already exists" in migration["error_message"]
    assert columns_of(env.primary, env.database, "sneaky") == ["id", "other"]
    assert env.count("sneaky") == 0  # no final insert


def test_drop_with_trash_moves_the_table_to_pending_drops(env):
    create_sample_table(env.primary, env.database, "old_stuff", 25)
    env.primary.execute(f"CREATE TRIGGER {q(env.database)}.old_stuff_ins BEFORE INSERT ON "
                        f"{q(env.database)}.old_stuff FOR EACH ROW SET NEW.amount = NEW.amount + 1")
    conf = env.started("DROP TABLE old_stuff")
    assert env.run(conf) == "success"
    assert tables_in(env.primary, env.database) == []
    trashed = tables_in(env.primary, TRASH)
    assert len(trashed) == 1 and TIMESTAMPED.match(trashed[0])["table"] == "old_stuff"
    assert env.primary.query(f"SELECT COUNT(*) FROM {q(TRASH)}.{q(trashed[0])}") == [(25,)]
    assert triggers_on(env.primary, env.database) == [] and triggers_on(env.primary, TRASH) == []
    state = env.state(conf["id"])
    assert state["retired_to"] == f"{TRASH}.{trashed[0]}"
    assert env.status(conf["id"]) == 8
    assert env.run(conf) == "failed"  # re-run after completion: refused at once, nothing else moves
    assert tables_in(env.primary, TRASH) == trashed


def test_drop_rerun_after_the_move_finds_the_table_in_pending_drops(env):
    create_sample_table(env.primary, env.database, "moved", 3)
    conf = env.started("DROP TABLE moved", final_insert=f"INSERT INTO {q(env.database)}.log_of_drops VALUES (1)")
    env.primary.execute(f"CREATE TABLE {q(env.database)}.log_of_drops (n INT)")
    old = "20260101000000000_moved"
    env.write_state(conf["id"], {"steps_done": ["run_ddl:ddl_started"], "old_table": old,
                                 "retired_to": f"{TRASH}.{old}"})
    env.primary.execute(f"CREATE DATABASE {q(TRASH)}",
                        f"RENAME TABLE {q(env.database)}.moved TO {q(TRASH)}.{q(old)}")
    assert env.run(conf) == "success"
    assert tables_in(env.primary, TRASH) == [old]
    assert env.count("log_of_drops") == 1
    assert env.status(conf["id"]) == 8


def test_drop_without_trash_drops_the_table(env):
    env.settings(enable_trash=False)
    create_sample_table(env.primary, env.database, "gone", 3)
    create_sample_table(env.primary, env.database, "kept", 3)
    conf = env.started("DROP TABLE gone")
    assert env.run(conf) == "success"
    assert tables_in(env.primary, env.database) == ["kept"]
    assert not env.primary.query("SHOW DATABASES LIKE %s", (TRASH,))
    assert env.status(conf["id"]) == 8


def test_drop_of_a_view(env):
    create_sample_table(env.primary, env.database, "my-table", 3)
    env.primary.execute(f"CREATE VIEW {q(env.database)}.amounts AS SELECT amount FROM {q(env.database)}.`my-table`")
    conf = env.started("DROP VIEW amounts")
    assert env.run(conf) == "success"
    assert tables_in(env.primary, env.database) == ["my-table"]
    assert env.count("my-table") == 3
    assert env.status(conf["id"]) == 8


def test_drop_of_a_hostile_table_name_is_quoted(env):
    name = "t; DROP TABLE victim"
    create_sample_table(env.primary, env.database, "victim", 4)
    create_sample_table(env.primary, env.database, name, 2)
    conf = env.started("DROP TABLE victim")
    conf.update(table=name, ddl_statement=f"DROP TABLE `{name}`")
    assert env.run(conf) == "success"
    assert tables_in(env.primary, env.database) == ["victim"]
    assert env.count("victim") == 4
    trashed = tables_in(env.primary, TRASH)
    assert [TIMESTAMPED.match(t)["table"] for t in trashed] == [name]


def test_ddl_for_another_table_is_refused_before_any_sql(env):
    create_sample_table(env.primary, env.database, "victim", 4)
    conf = env.started("DROP TABLE victim")
    conf.update(table="t; DROP TABLE victim", ddl_statement="DROP TABLE victim")
    assert env.run(conf) == "failed"
    migration = env.api.migration(conf["id"])
    assert migration["status"] == 10 and "changes table 'victim'" in migration["error_message"]
    assert tables_in(env.primary, env.database) == ["victim"]


def test_final_insert_failure_fails_the_migration(env):
    create_sample_table(env.primary, env.database, "employees", 3)
    conf = env.started("ALTER TABLE employees ADD COLUMN salary INT",
                       final_insert="INSERT INTO employees (nope) VALUES (1)")
    assert env.run(conf) == "failed"
    migration = env.api.migration(conf["id"])
    assert migration["status"] == 10 and "final_insert failed" in migration["error_message"]
    assert "salary" in columns_of(env.primary, env.database, "employees")
    assert env.marker_rows(conf["id"], "employees") == 0  # rolled back with it: a fixed re-run may still insert


def test_long_run_alter_is_not_run_directly(env):
    create_sample_table(env.primary, env.database, "employees", 3)
    conf = env.started("ALTER TABLE employees ADD COLUMN salary INT", runtype="long")
    assert env.run(conf) == "skipped"  # the copy task's to do: run_ddl ends skipped with the reason
    assert env.api.migration(conf["id"])["status"] == 3
    assert "salary" not in columns_of(env.primary, env.database, "employees")
