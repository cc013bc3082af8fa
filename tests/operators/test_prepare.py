"""Prepare (status 0) on real MariaDB, the real pt-osc and the real shift API, run through dag.test()."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tests.support.airflow import run_dag, task_states, xcoms
from tests.support.mariadb import TEST_PASSWORD
from tests.support.tables import columns_of, create_sample_table, q, tables_in


@pytest.fixture
def env(primary, database, shift_api, shift_settings, airflow_home):
    """Everything a prepare run needs; returns a small namespace of helpers."""
    shift_settings()
    return Env(primary, database, shift_api)


class Env:
    def __init__(self, primary, database, api):
        self.primary, self.database, self.api = primary, database, api

    def claim(self, ddl: str, final_insert: str = "") -> dict:
        """Create a migration in shift and unstage it, as the runner's sensor would: the DAG run's conf."""
        created = self.api.create(ddl=ddl, database=self.database, final_insert=final_insert)
        return self.api.claim(created["id"])

    def info_stats(self, table: str) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.primary.query(
            "SELECT TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s", (self.database, table))[0])


def failed_in_shift(env: Env, migration_id: int) -> str:
    migration = env.api.migration(migration_id)
    assert migration["status"] == 10, migration
    assert migration["error_message"], migration
    return migration["error_message"]


def test_alter_prepare_collects_stats_and_advances(env):
    create_sample_table(env.primary, env.database, "employees", 500)
    conf = env.claim("ALTER TABLE employees ADD COLUMN salary INT",
                     final_insert="INSERT INTO employees (name, amount, created) VALUES ('x', 1, NOW())")
    run = run_dag("shift_test_prepare", conf)
    assert set(task_states(run).values()) == {"success"}, task_states(run)
    rows, data, index = env.info_stats("employees")
    migration = env.api.migration(conf["id"])
    assert migration["status"] == 1
    assert (migration["table_rows_start"], migration["table_size_start"], migration["index_size_start"]) == (
        rows, data, index)
    assert data > 0 and index > 0
    assert xcoms(run)["collect_table_stats"]["table_stats"] == {
        "table_rows": rows, "table_size": data, "index_size": index, "rows": f"about {rows:,} (estimate)"}
    # Validation changed nothing: no new column, the final insert rolled back.
    assert "salary" not in columns_of(env.primary, env.database, "employees")
    assert env.primary.query(f"SELECT COUNT(*) FROM {q(env.database)}.employees")[0][0] == 500
    assert tables_in(env.primary, env.database) == ["employees"]
    # Re-running the whole prepare (cleared) leaves it at 1: every task sees it moved on and ends skipped
    # with the reason, next_step is not called twice.
    run = run_dag("shift_test_prepare", conf)
    assert set(task_states(run).values()) == {"skipped"}
    assert env.api.migration(conf["id"])["status"] == 1


def test_create_prepare_leaves_nothing_behind(env):
    conf = env.claim("CREATE TABLE `order` (id INT PRIMARY KEY, note VARCHAR(20))",
                     final_insert="INSERT INTO `order` (id, note) VALUES (1, 'first')")
    run = run_dag("shift_test_prepare", conf)
    assert set(task_states(run).values()) == {"success"}, task_states(run)
    assert tables_in(env.primary, env.database) == []
    migration = env.api.migration(conf["id"])
    assert migration["status"] == 1
    assert migration["table_rows_start"] is None  # no stats for a CREATE
    assert "table_stats" not in xcoms(run).get("collect_table_stats", {})


def test_create_view_prepare_leaves_nothing_behind(env):
    create_sample_table(env.primary, env.database, "my-table", 3)
    conf = env.claim("CREATE VIEW big_amounts AS SELECT id, amount FROM `my-table` WHERE amount > 1")
    run = run_dag("shift_test_prepare", conf)
    assert set(task_states(run).values()) == {"success"}, task_states(run)
    assert tables_in(env.primary, env.database) == ["my-table"]
    assert env.api.migration(conf["id"])["status"] == 1


def test_create_of_an_existing_table_fails_the_migration(env):
    create_sample_table(env.primary, env.database, "exists_already", 2)
    conf = env.claim("CREATE TABLE exists_already (id INT PRIMARY KEY)")
    run = run_dag("shift_test_prepare", conf)
    states = task_states(run)
    assert states["dry_run"] == "failed" and states["advance"] == "upstream_failed", states
    message = failed_in_shift(env, conf["id"])
    assert "already exists" in message and "exists_already" in message
    assert env.primary.query(f"SELECT COUNT(*) FROM {q(env.database)}.exists_already")[0][0] == 2


def test_invalid_ddl_is_caught_by_the_ptosc_dry_run(env):
    create_sample_table(env.primary, env.database, "employees", 10)
    conf = env.claim("ALTER TABLE employees ADD COLUMN salary NOTATYPE")
    run = run_dag("shift_test_dry_run", conf)
    assert task_states(run) == {"dry_run": "failed"}
    message = failed_in_shift(env, conf["id"])
    assert "pt-online-schema-change exited" in message, message
    assert "NOTATYPE" in message or "syntax" in message.lower(), message
    assert columns_of(env.primary, env.database, "employees") == ["id", "name", "amount", "created"]
    assert tables_in(env.primary, env.database) == ["employees"]  # pt-osc left no shadow table


def test_dry_run_keeps_the_password_off_every_command_line(env):
    create_sample_table(env.primary, env.database, "order", 2000)
    conf = env.claim("ALTER TABLE `order` ADD COLUMN extra INT")
    seen_ptosc, leaks = [], []
    stop = threading.Event()
    needle = TEST_PASSWORD.encode()

    def scan():
        while not stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"pt-online-schema-change" in cmdline and b"--dry-run" in cmdline:
                    seen_ptosc.append(cmdline.split(b"\0"))
                if needle in cmdline:
                    leaks.append((entry.name, cmdline))
            time.sleep(0.005)

    scanner = threading.Thread(target=scan, daemon=True)
    scanner.start()
    try:
        run = run_dag("shift_test_dry_run", conf)
    finally:
        stop.set()
        scanner.join()
    assert task_states(run) == {"dry_run": "success"}
    assert seen_ptosc, "the scan never saw pt-osc running"
    assert leaks == []
    argv = [a.decode() for a in seen_ptosc[0] if a]
    defaults = next(a for a in argv if a.startswith("--defaults-file="))
    assert argv.index(defaults) == 2  # perl, the script, then --defaults-file first
    assert not os.path.exists(defaults.split("=", 1)[1])  # the 0600 file is gone afterwards
    assert "extra" not in columns_of(env.primary, env.database, "order")
    log = env.api.request("GET", "migrations/get_file",
                          params={"migration_id": conf["id"], "file_type": "0"}).json()["contents"]
    assert "Dry run complete" in log


def test_short_run_alter_skips_ptosc(env):
    create_sample_table(env.primary, env.database, "employees", 5)
    conf = env.claim("ALTER TABLE employees ADD COLUMN salary NOTATYPE")
    conf["runtype"] = 2  # a short run: the DDL is only checked when it runs
    run = run_dag("shift_test_dry_run", conf)
    assert task_states(run) == {"dry_run": "success"}


def test_final_insert_rejected_by_shape(env):
    create_sample_table(env.primary, env.database, "employees", 5)
    conf = env.claim("ALTER TABLE employees ADD COLUMN salary INT",
                     final_insert="DELETE FROM employees")
    run = run_dag("shift_test_validate_final_insert", conf)
    assert task_states(run) == {"validate_final_insert": "failed"}
    assert "must be an INSERT INTO statement" in failed_in_shift(env, conf["id"])
    assert env.primary.query(f"SELECT COUNT(*) FROM {q(env.database)}.employees")[0][0] == 5


def test_final_insert_rejected_by_the_database(env):
    create_sample_table(env.primary, env.database, "employees", 5)
    conf = env.claim("ALTER TABLE employees ADD COLUMN salary INT",
                     final_insert="INSERT INTO employees (no_such_column) VALUES (1)")
    run = run_dag("shift_test_validate_final_insert", conf)
    assert task_states(run) == {"validate_final_insert": "failed"}
    message = failed_in_shift(env, conf["id"])
    assert "final_insert fails on the database" in message and "no_such_column" in message


def test_drop_prepare_needs_the_table(env):
    conf = env.claim("DROP TABLE missing_table")
    run = run_dag("shift_test_dry_run", conf)
    assert task_states(run)["dry_run"] == "failed"
    assert "does not exist" in failed_in_shift(env, conf["id"])


def test_drop_prepare_of_an_existing_table_changes_nothing(env):
    create_sample_table(env.primary, env.database, "old_stuff", 7)
    conf = env.claim("DROP TABLE old_stuff")
    run = run_dag("shift_test_prepare", conf)
    assert set(task_states(run).values()) == {"success"}, task_states(run)
    assert tables_in(env.primary, env.database) == ["old_stuff"]
    assert env.api.migration(conf["id"])["status"] == 1
    assert xcoms(run)["collect_table_stats"]["table_stats"]["table_size"] > 0


@pytest.mark.parametrize("table, ddl, why", [
    ("t; DROP TABLE victim", "ALTER TABLE t ADD COLUMN c INT", "changes table 't'"),
    ("victim", "ALTER TABLE victim ADD COLUMN c INT; DROP TABLE victim", "more than one statement"),
    ("victim", "ALTER TABLE other_db.victim ADD COLUMN c INT", "names database 'other_db'"),
    ("victim", "DROP TABLE victim", "is a DROP but the migration's action is ALTER"),
])
def test_ddl_that_does_not_match_the_migration_is_refused_before_any_sql(env, table, ddl, why):
    create_sample_table(env.primary, env.database, "victim", 3)
    conf = env.claim("ALTER TABLE victim ADD COLUMN c INT")
    conf.update(table=table, ddl_statement=ddl)
    run = run_dag("shift_test_validate_final_insert", conf)
    assert task_states(run)["validate_final_insert"] == "failed"
    assert why in failed_in_shift(env, conf["id"])
    assert tables_in(env.primary, env.database) == ["victim"]
    assert columns_of(env.primary, env.database, "victim") == ["id", "name", "amount", "created"]


def test_backticks_in_names_are_refused_by_the_model(env):
    create_sample_table(env.primary, env.database, "victim", 3)
    conf = env.claim("ALTER TABLE victim ADD COLUMN c INT")
    conf["database"] = "x`; DROP DATABASE mysql; --"
    run = run_dag("shift_test_validate_final_insert", conf)
    assert task_states(run)["validate_final_insert"] == "failed"
    # A malformed conf is refused before any SQL; shift is left alone (the claim step reports those).
    migration = env.api.migration(conf["id"])
    assert migration["status"] == 0 and not migration["error_message"]
    assert tables_in(env.primary, env.database) == ["victim"]
    assert env.primary.query("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='mysql'") == [(1,)]


# --- ALTERs whose new table would refuse the application's writes (pt-osc's triggers copy them) -----

@pytest.mark.parametrize("ddl, reason", [
    ("ALTER TABLE t ADD COLUMN region INT NOT NULL, ADD INDEX iregion (region)",
     "column `region` is added NOT NULL without a DEFAULT"),
    ("ALTER TABLE t MODIFY name VARCHAR(4) NOT NULL", "column `name` changes from varchar(64) NOT NULL to "
                                                      "varchar(4) NOT NULL, which existing rows do not fit (e.g. "),
    ("ALTER TABLE t MODIFY amount TINYINT NOT NULL", "column `amount` changes from int(11) NOT NULL to tinyint(4)"),
    ("ALTER TABLE t ADD COLUMN note VARCHAR(8) NULL, MODIFY created DATETIME NULL, CHANGE amount qty SMALLINT "
     "NOT NULL", None),
])
def test_prepare_refuses_an_alter_the_triggers_cannot_apply_before_any_trigger(env, ddl, reason):
    create_sample_table(env.primary, env.database, "t", 500)
    conf = env.claim(ddl)
    run = run_dag("shift_test_dry_run", conf)
    if reason is None:  # renamed and widened columns, a nullable new column: accepted
        assert task_states(run) == {"dry_run": "success"}, env.api.migration(conf["id"])
        return
    assert task_states(run) == {"dry_run": "failed"}
    message = failed_in_shift(env, conf["id"])
    assert "refusing this ALTER: " in message and reason in message, message
    assert env.primary.query("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA=%s",
                             (env.database,))[0][0] == 0
    assert tables_in(env.primary, env.database) == ["t"]


def test_prepare_accepts_a_narrowing_the_data_fits(env):
    create_sample_table(env.primary, env.database, "t", 500)  # names are 'name-1' .. 'name-500'
    conf = env.claim("ALTER TABLE t MODIFY name VARCHAR(8) NOT NULL, MODIFY amount SMALLINT NOT NULL")
    run = run_dag("shift_test_dry_run", conf)
    assert task_states(run) == {"dry_run": "success"}, env.api.migration(conf["id"])


# --- new unique / primary keys: the runner checks the data itself ------------------------------------

@pytest.mark.parametrize("ddl", ["ALTER TABLE t ADD UNIQUE KEY uname (name)",
                                 "ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (id, amount)"])
def test_a_new_unique_key_on_unique_data_passes_prepare(env, ddl):
    create_sample_table(env.primary, env.database, "t", 300)
    conf = env.claim(ddl)
    run = run_dag("shift_test_dry_run", conf)
    assert task_states(run) == {"dry_run": "success"}, env.api.migration(conf["id"])


def test_a_new_unique_key_over_duplicates_is_refused_naming_them(env):
    create_sample_table(env.primary, env.database, "t", 300)  # amount = seq % 1000: 1..300, unique so far
    env.primary.execute(f"UPDATE {q(env.database)}.t SET amount = 900 WHERE id IN (1, 2, 3)")
    conf = env.claim("ALTER TABLE t ADD UNIQUE KEY uamount (amount)")
    run = run_dag("shift_test_dry_run", conf)
    assert task_states(run) == {"dry_run": "failed"}
    message = failed_in_shift(env, conf["id"])
    assert "the new unique key `uamount` (amount) is not unique" in message and "900 (3 rows)" in message, message


# --- foreign keys: refused unless the settings allow them ----------------------------------------------

def test_foreign_keys_are_refused_by_default_and_allowed_by_the_setting(env, shift_settings):
    db = q(env.database)
    env.primary.execute(f"CREATE TABLE {db}.parent (id INT PRIMARY KEY)",
                        f"CREATE TABLE {db}.child (id INT PRIMARY KEY, pid INT, "
                        f"CONSTRAINT test_fk FOREIGN KEY (pid) REFERENCES {db}.parent (id))")
    for table in ("child", "parent"):
        conf = env.claim(f"ALTER TABLE {table} ADD COLUMN note INT NULL")
        run = run_dag("shift_test_dry_run", conf)
        assert task_states(run) == {"dry_run": "failed"}
        message = failed_in_shift(env, conf["id"])
        assert "foreign keys `test_fk`" in message and "allow_foreign_keys" in message, message
    shift_settings(allow_foreign_keys=True)
    conf = env.claim("ALTER TABLE child ADD COLUMN note INT NULL")
    run = run_dag("shift_test_dry_run", conf)
    assert task_states(run) == {"dry_run": "success"}, env.api.migration(conf["id"])
    # A parent stays refused: pt-osc would rewrite its children's constraints (other tables).
    conf = env.claim("ALTER TABLE parent ADD COLUMN note INT NULL")
    assert task_states(run_dag("shift_test_dry_run", conf)) == {"dry_run": "failed"}
    assert "reference it" in failed_in_shift(env, conf["id"])
