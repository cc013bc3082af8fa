"""Instant DDL, step by step on real MariaDB, the real shift API and Airflow (dag.test of one-operator DAGs).

Detection in prepare, the copy's re-check, and the rename's in-place ALTER: bounded by
the lock wait, and applied once even when a crash hits right after it ran.
"""

from __future__ import annotations

import time

import pytest

from shift_provider.engine.final_insert import BOOKKEEPING_DB
from shift_provider.engine.instant_ddl import probe
from shift_provider.hooks.cluster import ShiftClusterHook
from shift_provider.contract.models import CustomOptions, Migration
from shift_provider.mysql.table_definition import definition
from shift_provider.contract.state_file import MigrationState
from tests.support.airflow import run_dag, task_states, xcoms
from tests.support.tables import columns_of, create_sample_table, q, tables_in, triggers_on

FINAL_INSERT = "INSERT INTO t (name, amount, created) VALUES ('final-insert', 7, '2021-01-01')"
ADD = "ALTER TABLE t ADD COLUMN salary INT NULL"


class Env:
    def __init__(self, primary, database, api, make_settings):
        self.primary, self.database, self.api = primary, database, api
        self.settings = make_settings()
        create_sample_table(primary, database, "t", 2000)

    def create(self, ddl: str = ADD, **kwargs) -> dict:
        """A migration at 0, unstaged: the prepare DAG run's conf."""
        created = self.api.create(ddl=ddl, database=self.database, final_insert=FINAL_INSERT, **kwargs)
        return self.api.claim(created["id"])

    def detect(self, payload: dict):
        run = run_dag("shift_test_detect_instant_ddl", payload)
        assert str(run.state) == "success", task_states(run)
        return xcoms(run)["detect_instant_ddl"]

    def to_copy(self, payload: dict) -> dict:
        mid = payload["id"]
        self.api.machine("next_step", mid)
        for step, extra in (("approve", {"runtype": "long"}), ("start", {})):
            response = self.api.human(step, mid, **extra)
            assert response.status_code == 200, response.text
        return self.api.claim(mid)

    def copy(self, payload: dict) -> dict:
        run = run_dag("shift_test_copy", payload)
        assert str(run.state) == "success", task_states(run)
        assert self.api.migration(payload["id"])["status"] == 4
        return xcoms(run)["copy"]

    def to_rename(self, mid: int) -> dict:
        response = self.api.human("rename", mid)
        assert response.status_code == 200, response.text
        return self.api.claim(mid)

    def at_rename(self, ddl: str = ADD) -> dict:
        """Detected instant, copied nothing, the human said rename: the rename run's conf."""
        payload = self.create(ddl)
        assert self.detect(payload)["instant_ddl"] is True
        copy = self.copy(self.to_copy(payload))
        assert copy["copy_outcome"] == "instant"
        return self.to_rename(payload["id"])

    def state(self, mid: int) -> MigrationState:
        response = self.api.request("GET", "migrations/get_file", params={"migration_id": mid, "file_type": 1})
        return MigrationState.from_yaml(response.json().get("contents"), mid)

    def log(self, mid: int) -> str:
        response = self.api.request("GET", "migrations/get_file", params={"migration_id": mid, "file_type": 0})
        return response.json().get("contents", "") if response.status_code == 200 else ""

    def definition(self, payload: dict) -> str:
        return definition(ShiftClusterHook(Migration.from_payload(payload), self.settings), self.database, "t")

    def final_inserts(self) -> int:
        return self.primary.query(f"SELECT COUNT(*) FROM {q(self.database)}.t WHERE name = 'final-insert'")[0][0]

    def probes_left(self) -> list[str]:
        return [t for t in tables_in(self.primary, BOOKKEEPING_DB) if t.startswith("_instant_probe_")]


@pytest.fixture
def env(primary, database, shift_api, shift_settings, airflow_home):
    return Env(primary, database, shift_api, shift_settings)


# --- detection (prepare) ----------------------------------------------------------------------

@pytest.mark.parametrize("ddl, instant, reason", [
    (ADD, True, "with 0 rows affected: no row is copied"),
    ("ALTER TABLE t ADD COLUMN flag INT NOT NULL DEFAULT 5", True, "succeeded"),
    ("ALTER TABLE t CHANGE name full_name VARCHAR(64) NOT NULL", True, "succeeded"),
    ("ALTER TABLE t ALTER COLUMN amount SET DEFAULT 3", True, "succeeded"),
    ("ALTER TABLE t ADD INDEX idx_name (name)", False, "Reason: ADD INDEX"),
    ("ALTER TABLE t MODIFY amount BIGINT NOT NULL", False, "Cannot change column type"),
    ("ALTER TABLE t ADD COLUMN salary INT NULL, ALGORITHM=INPLACE", False, "names ALGORITHM itself"),
    ("ALTER TABLE t ADD COLUMN salary INT NULL, LOCK=NONE", False, "names LOCK itself"),
    # MariaDB 10.11 accepts ALGORITHM=INSTANT for these and copies the table: never instant.
    ("ALTER TABLE t ENGINE=Aria", False, "ENGINE rebuilds the table"),
    ("ALTER TABLE t ADD COLUMN salary INT NULL, ENGINE = MyISAM", False, "ENGINE rebuilds the table"),
    ("ALTER TABLE t ROW_FORMAT=COMPACT", False, "ROW_FORMAT rebuilds the table"),
])
def test_detection_on_an_empty_copy_leaves_the_table_alone(env, ddl, instant, reason):
    payload = env.create(ddl)
    before = env.definition(payload)
    detected = env.detect(payload)
    assert detected["instant_ddl"] is instant and reason in detected["instant_ddl_reason"], detected
    assert env.state(payload["id"]).instant_ddl is instant
    log = env.log(payload["id"])
    if instant:
        assert "this ALTER is instant on this server: no rows will be copied" in log
        assert "it will be applied with ALGORITHM=INSTANT at rename" in log
    else:
        assert "pt-online-schema-change will copy the rows" in log
    assert env.definition(payload) == before and triggers_on(env.primary, env.database) == []
    assert tables_in(env.primary, env.database) == ["t"] and env.probes_left() == []


@pytest.mark.parametrize("clause", ["ENGINE=Aria", "ENGINE=MyISAM"])
def test_the_probe_reads_rows_affected_not_the_accepted_keyword(env, clause):
    """Even tried (bypassing the ENGINE rule), an engine change is seen copying the probe's row."""
    payload = env.create()
    migration = Migration.from_payload(payload)
    verdict = probe(ShiftClusterHook(migration, env.settings), migration, clause)
    assert verdict.instant is False and "copied the probe's row (1 row(s) affected" in verdict.reason, verdict
    assert env.probes_left() == [] and tables_in(env.primary, env.database) == ["t"]


def test_detection_does_not_apply_to_short_runs(env):
    payload = dict(env.create(), runtype=2)  # a short run: the DDL runs directly at start
    detected = env.detect(payload)
    assert detected["instant_ddl"] is False and detected["instant_ddl_reason"] == "not a pt-osc ALTER"
    assert env.state(payload["id"]).instant_ddl is None  # no state file written


def test_custom_option_parses_string_booleans():
    assert CustomOptions.parse('{"prefer_instant_ddl": "false"}').prefer_instant_ddl is False
    assert CustomOptions.parse('{"prefer_instant_ddl": false}').prefer_instant_ddl is False
    assert CustomOptions.parse('{"prefer_instant_ddl": "true"}').prefer_instant_ddl is True
    assert CustomOptions.parse("{}").prefer_instant_ddl is None
    with pytest.raises(ValueError):
        CustomOptions.parse('{"prefer_instant_ddl": "sometimes"}')


# --- the copy's re-check ----------------------------------------------------------------------

def test_copy_rechecks_and_uses_ptosc_when_no_longer_instant(env):
    payload = env.create()
    assert env.detect(payload)["instant_ddl"] is True
    copy_conf = env.to_copy(payload)
    before = env.primary.query("SELECT @@GLOBAL.innodb_instant_alter_column_allowed")[0][0]
    env.primary.execute("SET GLOBAL innodb_instant_alter_column_allowed = 'never'")
    try:
        copy = env.copy(copy_conf)
    finally:
        env.primary.execute(f"SET GLOBAL innodb_instant_alter_column_allowed = '{before}'")
    assert copy["copy_outcome"] == "copied" and copy["copy_percentage"] == 100
    assert f"_t_new_{payload['id']}" in tables_in(env.primary, env.database) and len(triggers_on(env.primary, env.database, "t")) == 3
    state = env.state(payload["id"])
    assert state.instant_ddl is False and state.copy_status == "succeeded"
    assert "prepare found this ALTER instant, but not any more" in env.log(payload["id"])
    run = run_dag("shift_test_rename", env.to_rename(payload["id"]))
    assert str(run.state) == "success", task_states(run)
    assert env.api.migration(payload["id"])["status"] == 8 and "salary" in columns_of(env.primary, env.database, "t")
    assert "instant_ddl_outcome" not in xcoms(run)["rename"]


# --- the rename ---------------------------------------------------------------------------------

def test_rerun_after_the_instant_alter_ran_does_not_apply_it_twice(env):
    conf = env.at_rename()
    mid = conf["id"]
    crashed = run_dag("shift_test_rename_fail_after_instant_alter", conf)
    assert task_states(crashed) == {"rename": "failed"}
    assert env.api.migration(mid)["status"] == 5  # retryable: left at rename in progress
    assert "salary" in columns_of(env.primary, env.database, "t")
    applied = env.definition(conf)
    state = env.state(mid)
    assert state.instant_definition_before and "rename.instant_alter" not in state.steps_done

    rerun = run_dag("shift_test_rename", conf)
    assert str(rerun.state) == "success", task_states(rerun)
    out = xcoms(rerun)["rename"]
    assert out["instant_ddl_outcome"] == "already_applied" and "instant_ddl_seconds" not in out
    assert env.definition(conf) == applied  # an ADD COLUMN applied twice would have failed anyway
    assert env.api.migration(mid)["status"] == 8 and env.final_inserts() == 1
    assert "rename.instant_alter" in env.state(mid).steps_done


def test_rerun_after_the_final_insert_runs_it_once(env):
    conf = env.at_rename()
    crashed = run_dag("shift_test_rename_fail_after_final_insert", conf)
    assert task_states(crashed) == {"rename": "failed"} and env.final_inserts() == 1
    applied = env.definition(conf)
    rerun = run_dag("shift_test_rename", conf)
    assert str(rerun.state) == "success", task_states(rerun)
    assert xcoms(rerun)["rename"]["instant_ddl_outcome"] == "already_applied"
    assert env.final_inserts() == 1 and env.definition(conf) == applied
    assert env.api.migration(conf["id"])["status"] == 8


def test_instant_alter_waits_within_the_lock_bound(env, shift_settings):
    env.settings = shift_settings(rename_lock_wait_timeout=1, rename_retries=1)
    conf = env.at_rename()
    holder = env.primary.connect(autocommit=False)
    try:
        with holder.cursor() as cur:  # an open transaction holds the table's metadata lock
            cur.execute(f"SELECT COUNT(*) FROM {q(env.database)}.t")
            cur.fetchall()
            started = time.monotonic()
            run = run_dag("shift_test_rename", conf)
            elapsed = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert task_states(run) == {"rename": "failed"}
    assert elapsed < 20, elapsed
    assert env.api.migration(conf["id"])["status"] == 5
    assert "salary" not in columns_of(env.primary, env.database, "t")
    assert "did not get its metadata lock in 2 attempt(s)" in env.log(conf["id"])
    rerun = run_dag("shift_test_rename", conf)
    assert str(rerun.state) == "success", task_states(rerun)
    assert xcoms(rerun)["rename"]["instant_ddl_outcome"] == "applied"
    assert env.api.migration(conf["id"])["status"] == 8 and env.final_inserts() == 1


# --- a default that differs per row: pt-osc copies it -------------------------------------------------

def test_a_random_default_is_copied_by_ptosc_not_applied_instantly(env):
    env.primary.execute(f"INSERT INTO {q(env.database)}.t (name, amount, created) "
                        f"SELECT CONCAT('more-', seq), seq, '2020-01-01' FROM {q(env.database)}.seq_1_to_3000")
    assert env.primary.query(f"SELECT COUNT(*) FROM {q(env.database)}.t")[0][0] == 5000
    payload = env.create("ALTER TABLE t ADD COLUMN shard TINYINT NOT NULL DEFAULT (FLOOR(RAND()*16))")
    detected = env.detect(payload)
    assert detected["instant_ddl"] is False and "RAND" in detected["instant_ddl_reason"], detected
    assert env.copy(env.to_copy(payload))["copy_outcome"] == "copied"
    run = run_dag("shift_test_rename", env.to_rename(payload["id"]))
    assert str(run.state) == "success", task_states(run)
    assert env.api.migration(payload["id"])["status"] == 8
    distinct = env.primary.query(f"SELECT COUNT(DISTINCT shard) FROM {q(env.database)}.t")[0][0]
    assert distinct > 1, "every row got the one value of an instant ALTER"
    assert triggers_on(env.primary, env.database) == []


# --- table options: AUTO_INCREMENT on both paths -------------------------------------------------------

@pytest.mark.parametrize("ddl, comment", [("ALTER TABLE t AUTO_INCREMENT=5000", ""),
                                          ("ALTER TABLE t COMMENT='orders v2', AUTO_INCREMENT=5000", "orders v2")])
@pytest.mark.parametrize("prefer_instant", ["true", "false"])
def test_auto_increment_is_applied_on_both_paths(env, prefer_instant, ddl, comment):
    payload = env.create(ddl, custom_options={"prefer_instant_ddl": prefer_instant, "recursion_method": "none"})
    assert env.detect(payload)["instant_ddl"] is (prefer_instant == "true")
    copied = env.copy(env.to_copy(payload))
    assert copied["copy_outcome"] == ("instant" if prefer_instant == "true" else "copied")
    run = run_dag("shift_test_rename", env.to_rename(payload["id"]))
    assert str(run.state) == "success", (task_states(run), env.api.migration(payload["id"]))
    assert env.api.migration(payload["id"])["status"] == 8
    # The final insert is the first row after the ALTER: it got the counter the ALTER set.
    assert env.primary.query(f"SELECT id FROM {q(env.database)}.t WHERE name = 'final-insert'") == [(5000,)]
    assert env.primary.query("SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                             "AND TABLE_NAME='t'", (env.database,)) == [(comment,)]
    assert triggers_on(env.primary, env.database) == [] and tables_in(env.primary, env.database) == ["t"]


# --- a new unique key: checked by the runner, copied by pt-osc with --no-check-unique-key-change ------------

@pytest.mark.parametrize("ddl, runtype, keys", [
    ("ALTER TABLE t ADD UNIQUE KEY uname (name)", "long", {"PRIMARY", "uname"}),
    # pt-osc's --check-alter refuses DROP PRIMARY KEY unless the human approves it as nocheckalter.
    ("ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (id, amount)", "nocheckalter", {"PRIMARY"}),
])
def test_a_unique_key_on_unique_data_completes(env, ddl, runtype, keys):
    payload = env.create(ddl, custom_options={"recursion_method": "none"})
    run = run_dag("shift_test_dry_run", payload)
    assert str(run.state) == "success", env.api.migration(payload["id"])
    assert env.detect(payload)["instant_ddl"] is False
    mid = payload["id"]
    env.api.machine("next_step", mid)
    for step, extra in (("approve", {"runtype": runtype}), ("start", {})):
        assert env.api.human(step, mid, **extra).status_code == 200
    assert env.copy(env.api.claim(mid))["copy_outcome"] == "copied"
    run = run_dag("shift_test_rename", env.to_rename(mid))
    assert str(run.state) == "success", (task_states(run), env.api.migration(mid))
    assert env.api.migration(mid)["status"] == 8
    assert {r[0] for r in env.primary.query("SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE "
                                            "TABLE_SCHEMA=%s AND TABLE_NAME='t' AND NON_UNIQUE=0",
                                            (env.database,))} == keys
    assert env.primary.query(f"SELECT COUNT(*) FROM {q(env.database)}.t")[0][0] == 2001  # + the final insert
    assert triggers_on(env.primary, env.database) == []


def test_duplicates_written_during_the_copy_refuse_the_swap_and_leave_no_trigger(env):
    payload = env.create("ALTER TABLE t ADD UNIQUE KEY uname (name)", custom_options={"recursion_method": "none"})
    assert env.detect(payload)["instant_ddl"] is False
    assert env.copy(env.to_copy(payload))["copy_outcome"] == "copied"
    # The application writes a duplicate meanwhile: pt-osc's trigger REPLACEs the shadow table's row.
    env.primary.execute(f"INSERT INTO {q(env.database)}.t (name, amount, created) VALUES ('name-5', 1, NOW())")
    run = run_dag("shift_test_rename", env.to_rename(payload["id"]))
    assert str(run.state) == "failed"
    migration = env.api.migration(payload["id"])
    assert migration["status"] == 10
    assert "before the swap" in migration["error_message"] and "'name-5' (2 rows)" in migration["error_message"]
    assert triggers_on(env.primary, env.database) == [] and tables_in(env.primary, env.database) == ["t"]
    assert "uname" not in {r[0] for r in env.primary.query(
        "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA=%s AND TABLE_NAME='t'",
        (env.database,))}
    env.primary.execute(f"INSERT INTO {q(env.database)}.t (name, amount, created) VALUES ('app', 1, NOW())")
