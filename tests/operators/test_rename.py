"""Rename (status 5) on real MariaDB, the real pt-osc and the real shift API, run through dag.test().

The copy's end state is made by the real pt-osc (``--execute --no-swap-tables
--no-drop-new-table --no-drop-triggers``), as the copy step leaves it.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time

import pytest

from shift_provider import ptosc
from shift_provider.mysql import schema_ops
from shift_provider.engine import abandon_copy
from shift_provider.hooks.cluster import ShiftClusterHook
from shift_provider.contract.models import Migration
from shift_provider.operators.rename import SUBSTEPS, step_key
from shift_provider.engine.rename_steps import alter_expectations
from shift_provider.contract.state_file import MigrationState
from tests.support.airflow import run_dag, task_states, xcoms
from tests.support.tables import (
    BackgroundWriter,
    columns_of,
    content_checksum,
    create_sample_table,
    q,
    tables_in,
    triggers_on,
)

TABLE = "orders"
DDL = "ALTER TABLE orders ADD COLUMN note VARCHAR(32) NOT NULL DEFAULT 'n', ADD INDEX idx_note (note)"
FINAL_INSERT = "INSERT INTO rename_audit (note) VALUES ('orders renamed')"
OLD_NAME = re.compile(r"^\d{17}_orders$")
ROWS = 3000


def shadow(conf: dict) -> str:
    """The copy's shadow table for this migration (``_orders_new_<id>``)."""
    return ptosc.shadow_table_name(TABLE, conf["id"])


@pytest.fixture
def env(primary, database, shift_api, shift_settings, airflow_home):
    pending = database + "_pd"
    yield Env(primary, database, pending, shift_api, shift_settings)
    primary.execute(f"DROP DATABASE IF EXISTS {q(pending)}")


class Env:
    def __init__(self, primary, database, pending, api, make_settings):
        self.primary, self.database, self.pending, self.api = primary, database, pending, api
        self.make_settings = make_settings
        self.settings = self.configure()

    def configure(self, **overrides):
        """Settings for these servers; pending drops in a database of this test's own."""
        self.settings = self.make_settings(**{"pending_drops_db": self.pending, **overrides})
        return self.settings

    # -- the migration's life up to status 5 ---------------------------------------------------

    def prepared(self, rows: int = ROWS, final_insert: str = FINAL_INSERT) -> dict:
        """Table, audit table, a migration at 3 copy in progress (unstaged) with *_start stats."""
        create_sample_table(self.primary, self.database, TABLE, rows)
        self.primary.execute(f"CREATE TABLE {q(self.database)}.rename_audit "
                             "(id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(64) NOT NULL)")
        created = self.api.create(ddl=DDL, database=self.database, final_insert=final_insert)
        claimed = self.api.claim(created["id"])
        stats = schema_ops.table_stats(self.hook(claimed), self.database, TABLE)
        self.api.request("PUT", f"migrations/{created['id']}", stats.as_update("start"))
        self.api.machine("next_step", created["id"])
        for step, extra in (("approve", {"runtype": "long"}), ("start", {})):
            response = self.api.human(step, created["id"], **extra)
            assert response.status_code == 200, response.text
        return self.api.claim(created["id"])

    def hook(self, payload: dict) -> ShiftClusterHook:
        return ShiftClusterHook(Migration.from_payload(payload), self.settings)

    def copy(self, payload: dict, write_state: bool = True) -> None:
        """The copy step's end state: real pt-osc stopping before the swap, the state file as copy keeps it."""
        migration = Migration.from_payload(payload)
        hook = ShiftClusterHook(migration, self.settings)
        with hook.defaults_file() as defaults:
            command = ptosc.build_command(migration, self.settings, defaults, ptosc.Execution.EXECUTE)
            done = subprocess.run(command.argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        if write_state:
            state = MigrationState(migration_id=migration.id, database=migration.database, table=migration.table,
                                   new_table=command.new_table, copy_status="succeeded", copy_percentage=100,
                                   triggers=abandon_copy.ptosc_triggers(hook, migration.database, migration.table))
            self.write_state(migration.id, state)
        self.api.machine("next_step", migration.id)  # 3 -> 4 awaiting rename

    def to_rename(self, migration_id: int) -> dict:
        """The human says rename (5, staged); the runner claims it: the rename DAG run's conf."""
        response = self.api.human("rename", migration_id)
        assert response.status_code == 200, response.text
        return self.api.claim(migration_id)

    def ready(self, **kwargs) -> dict:
        payload = self.prepared()
        self.copy(payload, **kwargs)
        return self.to_rename(payload["id"])

    # -- reading back ----------------------------------------------------------------------------

    def write_state(self, migration_id: int, state: MigrationState) -> None:
        response = self.api.request("POST", "migrations/write_file",
                                    {"migration_id": migration_id, "file_type": 1, "contents": state.to_yaml()})
        assert response.status_code == 200, response.text

    def state(self, migration_id: int) -> MigrationState:
        response = self.api.request("GET", "migrations/get_file", params={"migration_id": migration_id,
                                                                          "file_type": 1})
        return MigrationState.from_yaml(response.json().get("contents"), migration_id)

    def log_file(self, migration_id: int) -> str:
        response = self.api.request("GET", "migrations/get_file", params={"migration_id": migration_id,
                                                                          "file_type": 0})
        return response.json().get("contents", "") if response.status_code == 200 else ""

    def old_tables(self, database: str) -> list[str]:
        return [t for t in tables_in(self.primary, database) if OLD_NAME.match(t)]

    def end_state(self, migration_id: int) -> dict:
        """Everything an uninterrupted rename leaves, with this test's names and timestamps taken out."""
        migration = self.api.migration(migration_id)
        state = self.state(migration_id)
        old = self.old_tables(self.pending)
        assert old == [state.old_table], (old, state)
        stamp = re.compile(r"^\d{17}_")
        return {
            "tables": sorted(stamp.sub("<ts>_", t) for t in tables_in(self.primary, self.database)),
            "pending_drops": sorted(stamp.sub("<ts>_", t) for t in tables_in(self.primary, self.pending)),
            "triggers": triggers_on(self.primary, self.database) + triggers_on(self.primary, self.pending),
            "columns": columns_of(self.primary, self.database, TABLE),
            "indexes": sorted({r[0] for r in self.primary.query(
                "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
                (self.database, TABLE))}),
            "checksum": content_checksum(self.primary, self.database, TABLE),
            "old_checksum": content_checksum(self.primary, self.pending, old[0]),
            "old_columns": columns_of(self.primary, self.pending, old[0]),
            "final_insert_rows": self.primary.query(
                f"SELECT note, COUNT(*) FROM {q(self.database)}.rename_audit GROUP BY note"),
            "markers": self.primary.query(
                "SELECT COUNT(*) FROM _shift_runner.final_inserts WHERE migration_id = %s AND target = %s",
                (migration_id, f"{self.database}.{TABLE}"))[0][0],
            "status": migration["status"],
            "table_rows_end": migration["table_rows_end"],  # refreshed after the swap: the real count
            "end_stats_sent": all(migration[f"{k}_end"] is not None for k in ("table_rows", "table_size",
                                                                                 "index_size")),
            "steps_done": sorted(state.steps_done),
            "retired_to_recorded": state.retired_to == f"{self.pending}.{state.old_table}",
        }


def succeeded(run) -> bool:
    return set(task_states(run).values()) == {"success"}


# --- the whole life -----------------------------------------------------------------------------

def test_prepare_copy_rename_with_writes_across_the_swap(env):
    """The whole long ALTER through the step DAGs: prepare, copy, rename, with writes all along."""
    create_sample_table(env.primary, env.database, TABLE, 20000)
    env.primary.execute(f"CREATE TABLE {q(env.database)}.rename_audit "
                        "(id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(64) NOT NULL)")
    created = env.api.create(ddl=DDL, database=env.database, final_insert=FINAL_INSERT,
                             custom_options={"recursion_method": "none"})
    mid = created["id"]
    writer = BackgroundWriter(env.primary, env.database, TABLE, interval=0.002).start()
    try:
        run = run_dag("shift_test_prepare", env.api.claim(mid))
        assert succeeded(run), task_states(run)
        for step, extra in (("approve", {"runtype": "long"}), ("start", {})):
            assert env.api.human(step, mid, **extra).status_code == 200
        run = run_dag("shift_test_copy", env.api.claim(mid))
        assert succeeded(run), task_states(run)
        assert env.api.migration(mid)["status"] == 4
        conf = env.to_rename(mid)
        time.sleep(0.3)
        run = run_dag("shift_test_rename", conf)
        time.sleep(0.3)  # writes keep landing on the renamed table
    finally:
        writer.stop()
    assert succeeded(run), task_states(run)
    assert writer.operations > 100
    assert writer.missing_rows() == set(), "acknowledged writes lost across the swap"
    assert columns_of(env.primary, env.database, TABLE)[-1] == "note"
    assert tables_in(env.primary, env.database) == [TABLE, "rename_audit"]
    (old,) = env.old_tables(env.pending)
    assert triggers_on(env.primary, env.database) == [] and triggers_on(env.primary, env.pending) == []
    assert "note" not in columns_of(env.primary, env.pending, old)
    migration = env.api.migration(mid)
    assert migration["status"] == 8
    for key in ("table_rows", "table_size", "index_size"):
        assert migration[f"{key}_start"] is not None and migration[f"{key}_end"] is not None, migration
    assert migration["table_rows_end"] > 15000 and migration["index_size_end"] > migration["index_size_start"]
    assert env.primary.query(f"SELECT note FROM {q(env.database)}.rename_audit") == [("orders renamed",)]
    state = env.state(mid)
    assert state.old_table == old and state.retired_to == f"{env.pending}.{old}"
    assert sorted(s for s in state.steps_done if s.startswith("rename.")) == sorted(step_key(s) for s in SUBSTEPS)
    # Cleared and run again once completed: refused at once (completed in shift, saying what to do), nothing happens.
    before = content_checksum(env.primary, env.database, TABLE)
    again = run_dag("shift_test_rename", conf)
    assert task_states(again) == {"rename": "failed"}
    refused = xcoms(again)["rename"]["refused"]
    assert "is completed (8) in shift" in refused and "no SQL ran" in refused, refused
    assert content_checksum(env.primary, env.database, TABLE) == before
    assert env.old_tables(env.pending) == [old]
    assert env.primary.query(f"SELECT COUNT(*) FROM {q(env.database)}.rename_audit")[0][0] == 1


def test_rename_log_names_each_statement_once_with_its_effect(env, capfd):
    """The task log of a rename: no bare "Rows affected: N", each change logged once with its statement."""
    conf = env.ready()
    capfd.readouterr()  # only the rename's own output from here
    run = run_dag("shift_test_rename", conf)
    assert succeeded(run), task_states(run)
    lines = capfd.readouterr().out.splitlines()
    task_lines = [line for line in lines if "[airflow.task." in line]
    assert task_lines, "no task log captured"
    assert [line for line in lines if "Rows affected" in line] == []
    ran = [line.split("ran: ", 1)[1].split(" [airflow.task.")[0].strip() for line in task_lines if " ran: " in line]
    swap = [r for r in ran if r.startswith("RENAME TABLE") and f"TO `{env.database}`.`{TABLE}`" in r]
    assert len(swap) == 1 and swap[0].endswith(": ok"), ran
    drops = [r for r in ran if r.startswith("DROP TRIGGER")]
    assert len(drops) == 3 and len(set(drops)) == 3, ran
    assert any(r.startswith("ANALYZE NO_WRITE_TO_BINLOG TABLE") for r in ran), ran
    # Every line carries one timestamp: Airflow's.
    assert all(len(re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line)) <= 1 for line in task_lines
               if " ran: " in line or "swap:" in line)


# --- faults after each sub-step, then the task cleared and run again -----------------------------

_REFERENCE: dict = {}


def reference_end_state(env) -> dict:
    """The end state of an uninterrupted rename of the same table (made once per session)."""
    if not _REFERENCE:
        conf = env.ready()
        assert succeeded(run_dag("shift_test_rename", conf))
        _REFERENCE.update(env.end_state(conf["id"]))
        # Leave this test's databases as the fault run will need them.
        env.primary.execute(f"DROP DATABASE {q(env.database)}", f"CREATE DATABASE {q(env.database)}",
                            f"DROP DATABASE IF EXISTS {q(env.pending)}")
    return _REFERENCE


@pytest.mark.parametrize("substep", SUBSTEPS)
def test_fault_after_each_substep_then_rerun_ends_as_uninterrupted(env, substep):
    reference = reference_end_state(env)
    assert reference["status"] == 8 and reference["markers"] == 1
    conf = env.ready()
    run = run_dag(f"shift_test_rename_fail_after_{substep}", conf)
    assert task_states(run) == {"rename": "failed"}
    # A retryable failure: the migration stays at 5 for a retry, the shift log says why.
    assert env.api.migration(conf["id"])["status"] == 5
    assert f"injected fault after rename sub-step '{substep}'" in env.log_file(conf["id"])
    state = env.state(conf["id"])
    assert OLD_NAME.match(state.old_table)
    assert step_key(substep) not in state.steps_done  # the fault hit before it was recorded
    run = run_dag("shift_test_rename", conf)
    assert succeeded(run), task_states(run)
    assert env.end_state(conf["id"]) == reference
    assert env.state(conf["id"]).old_table == state.old_table  # one name, one swap


# --- a long transaction on the table ----------------------------------------------------------

def test_long_transaction_bounds_the_rename_then_rerun_succeeds(env):
    env.configure(rename_lock_wait_timeout=1, rename_retries=2)
    conf = env.ready(write_state=False)  # also: no state file, names from information_schema
    holder = env.primary.connect(env.database, autocommit=False)
    probe_latency: list[float] = []
    stop = threading.Event()

    def probe():
        """Another client's reads: they queue behind the RENAME's lock request, at most its timeout."""
        conn = env.primary.connect(env.database)
        while not stop.is_set():
            started = time.monotonic()
            with conn.cursor() as cur:
                cur.execute(f"SELECT amount FROM {TABLE} WHERE id = 2")
            probe_latency.append(time.monotonic() - started)
            time.sleep(0.02)
        conn.close()

    prober = threading.Thread(target=probe, daemon=True)
    try:
        with holder.cursor() as cur:
            cur.execute(f"SELECT * FROM {TABLE} WHERE id = 1 FOR UPDATE")
        prober.start()
        started = time.monotonic()
        run = run_dag("shift_test_rename", conf)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        prober.join(timeout=10)
        holder.rollback()
        holder.close()
    assert task_states(run) == {"rename": "failed"}
    assert max(probe_latency) < 1 + 1.0, f"a reader waited {max(probe_latency):.1f}s behind the rename"
    migration = env.api.migration(conf["id"])
    assert migration["status"] == 5
    log = env.log_file(conf["id"])
    assert "did not get its metadata lock in 3 attempt(s) of lock_wait_timeout=1s" in log
    assert "The tables are unchanged" in log
    # Unchanged: the old schema, the shadow table and its triggers still there, no old table.
    assert "note" not in columns_of(env.primary, env.database, TABLE)
    assert sorted(tables_in(env.primary, env.database)) == sorted([TABLE, shadow(conf), "rename_audit"])
    assert len(triggers_on(env.primary, env.database, TABLE)) == 3
    chosen = env.state(conf["id"]).old_table
    assert OLD_NAME.match(chosen)
    # The transaction ended: the same run again finishes, under the name chosen the first time.
    run = run_dag("shift_test_rename", conf)
    assert succeeded(run), task_states(run)
    # The failed run really waited its 3 attempts of 1 s (load only lengthens a run; readers were bounded above).
    assert elapsed >= 3.0, f"the failed rename ran {elapsed:.1f}s: shorter than its 3 lock waits of 1 s"
    assert env.api.migration(conf["id"])["status"] == 8
    assert env.old_tables(env.pending) == [chosen]
    assert columns_of(env.primary, env.database, TABLE)[-1] == "note"


# --- refusing to swap ------------------------------------------------------------------------

@pytest.mark.parametrize("damage, message", [
    ("DELETE FROM {new} WHERE id <= 5", f"holds {ROWS - 5} rows but"),
    ("ALTER TABLE {new} DROP INDEX idx_note", "index `idx_note` (added by the ALTER) is missing"),
    ("DROP TRIGGER pt_osc_{db}_orders_del", "has no trigger copying DELETEs"),
])
def test_refuses_to_swap_a_wrong_new_table(env, damage, message):
    conf = env.ready()
    env.primary.execute(damage.format(db=env.database, new=shadow(conf)), database=env.database)
    before = content_checksum(env.primary, env.database, TABLE)
    run = run_dag("shift_test_rename", conf)
    assert task_states(run) == {"rename": "failed"}
    migration = env.api.migration(conf["id"])
    assert migration["status"] == 10
    assert "refusing to swap" in migration["error_message"] and message in migration["error_message"], migration
    assert content_checksum(env.primary, env.database, TABLE) == before
    assert "note" not in columns_of(env.primary, env.database, TABLE)
    assert env.old_tables(env.database) == []
    assert env.primary.query(f"SELECT COUNT(*) FROM {q(env.database)}.rename_audit")[0][0] == 0
    # Failed is terminal: the copy it refused is removed first, so nothing burdens the table's writes.
    assert triggers_on(env.primary, env.database) == []
    assert sorted(tables_in(env.primary, env.database)) == [TABLE, "rename_audit"]
    assert [t for t in tables_in(env.primary, env.pending) if t.endswith(shadow(conf))], "shadow not in pending drops"
    env.primary.execute(f"INSERT INTO {q(env.database)}.{TABLE} (name, amount, created) VALUES ('app', 1, NOW())")
    assert "the copy will not be used" in env.log_file(conf["id"])


# --- trash off, and pending drops = the migration's own database -----------------------------------

@pytest.mark.parametrize("settings", [{"enable_trash": False}, {"pending_drops_db": ""}])
def test_old_table_dropped_or_kept_in_place(env, settings):
    env.configure(**settings)
    conf = env.ready()
    assert not succeeded(run_dag("shift_test_rename_fail_after_retire", conf))
    assert succeeded(run_dag("shift_test_rename", conf))
    state = env.state(conf["id"])
    if settings.get("enable_trash") is False:
        assert state.retired_to == "dropped"
        assert tables_in(env.primary, env.database) == [TABLE, "rename_audit"]
    else:
        assert state.retired_to == f"{env.database}.{state.old_table}"
        assert env.old_tables(env.database) == [state.old_table]
        assert triggers_on(env.primary, env.database) == []
    assert env.api.migration(conf["id"])["status"] == 8
    assert env.primary.query(f"SELECT COUNT(*) FROM {q(env.database)}.rename_audit")[0][0] == 1


# --- the ALTER's expectations (no database) --------------------------------------------------------

def test_alter_expectations():
    e = alter_expectations("ADD COLUMN note VARCHAR(32) NOT NULL DEFAULT 'n, x', ADD INDEX idx_note (note), "
                           "DROP COLUMN `old col`, DROP KEY idx_amount, ADD UNIQUE KEY uk (a, b), "
                           "CHANGE amount total INT, RENAME COLUMN c TO d")
    assert e.added_columns == {"note", "total", "d"}
    assert e.dropped_columns == {"old col", "amount", "c"}
    assert e.added_indexes == {"idx_note", "uk"}
    assert e.dropped_indexes == {"idx_amount"}
    assert not e.may_keep_definition
    assert alter_expectations("ENGINE=InnoDB").may_keep_definition
    assert alter_expectations("ADD COLUMN IF NOT EXISTS z INT").may_keep_definition
    assert alter_expectations("ADD INDEX (a), ADD (x INT, y INT)").added_indexes == set()


# --- large tables: row counts by estimate ------------------------------------------------------

@pytest.mark.parametrize("rows_deleted", [0, ROWS - 600])
def test_row_counts_by_estimate(env, rows_deleted):
    """Above exact_count_max_rows the estimates are compared (here forced with a bound of 0 rows)."""
    conf = env.ready()
    if rows_deleted:  # a shadow table far short of rows (triggers do not fire on it)
        env.primary.execute(f"DELETE FROM {shadow(conf)} WHERE id > {ROWS - rows_deleted}", database=env.database)
    run = run_dag("shift_test_rename_by_estimate", conf)
    migration = env.api.migration(conf["id"])
    if rows_deleted:
        assert task_states(run) == {"rename": "failed"}
        assert migration["status"] == 10
        assert "(information_schema estimates; tolerance 1500 rows)" in migration["error_message"], migration
        assert "note" not in columns_of(env.primary, env.database, TABLE)
    else:
        assert succeeded(run), task_states(run)
        assert migration["status"] == 8
