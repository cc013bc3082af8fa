"""Prefer instant DDL, end to end: the sensor DAG claims, the real shift_migration DAG runs each
step, the human steps are done with the real shift-client, against real MariaDB and pt-osc.

A watcher polls information_schema the whole time for pt-osc's shadow table and triggers,
so "no rows were copied" is an observation, not a claim.
"""

from __future__ import annotations

import threading

import pytest

from tests.support.airflow import task_states, xcoms
from tests.support.e2e import claim_and_run, step_of
from tests.support.shift_api import shift_client
from tests.support.tables import BackgroundWriter, columns_of, create_sample_table, tables_in, triggers_on

FINAL_INSERT = "INSERT INTO t (name, amount, created) VALUES ('final-insert', 7, '2021-01-01')"
ROWS = 20000


class PtOscWatcher:
    """Polls for a shadow table (``_t_new``, ``_t_new_<id>``) and ``pt_osc_*`` triggers in a database until
    stopped; remembers what it saw."""

    def __init__(self, server, database: str, interval: float = 0.01) -> None:
        self.server, self.database, self.interval = server, database, interval
        self.shadow_seen = False
        self.triggers_seen: set[str] = set()
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ptosc-watcher", daemon=True)

    def __enter__(self) -> PtOscWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        conn = self.server.connect()
        try:
            with conn.cursor() as cur:
                while not self._stop.is_set():
                    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                                "AND TABLE_NAME LIKE '\\_t\\_new%%'", (self.database,))
                    self.shadow_seen |= bool(cur.fetchall())
                    cur.execute("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
                                "AND TRIGGER_NAME LIKE 'pt\\_osc\\_%%'", (self.database,))
                    self.triggers_seen |= {r[0] for r in cur.fetchall()}
                    self.polls += 1
                    self._stop.wait(self.interval)
        finally:
            conn.close()


def human(shift_api, *args: str) -> None:
    out = shift_client(*args, url=shift_api.url)
    assert out.returncode == 0, out.stderr


def one_run(expected_step: str):
    runs = claim_and_run()
    assert len(runs) == 1, runs
    run_id, dag_run = runs[0]
    assert step_of(dag_run) == expected_step, (run_id, task_states(dag_run))
    assert str(dag_run.state) == "success", task_states(dag_run)
    return dag_run


def final_inserts(primary, database: str) -> int:
    return primary.query(f"SELECT COUNT(*) FROM `{database}`.t WHERE name = 'final-insert'")[0][0]


def prepared(api, database: str, ddl: str, **create) -> tuple[int, object]:
    """File and prepare (pt-osc's --dry-run makes and drops its own `_t_new` here): (id, prepare run)."""
    mid = api.create(ddl=ddl, database=database, final_insert=FINAL_INSERT, **create)["id"]
    prepare = one_run("prepare")
    assert api.migration(mid)["status"] == 1
    return mid, prepare


def copy_step(api, mid: int):
    """Approve, start, copy: the copy run; status 4 at the end."""
    human(api, "approve", str(mid), "--runtype", "long")
    human(api, "start", str(mid))
    copy = one_run("copy")
    assert api.migration(mid)["status"] == 4
    return copy


@pytest.fixture
def e2e(airflow_home, shift_api, shift_settings, primary, database):
    shift_settings()
    return shift_api


def tablespace_of(server, database: str, table: str) -> tuple:
    """(table id, tablespace id) of an InnoDB table: both change when its rows are copied or rebuilt."""
    return tuple(server.query("SELECT TABLE_ID, SPACE FROM information_schema.INNODB_SYS_TABLES WHERE NAME = %s",
                              (f"{database}/{table}",))[0])


def test_instant_alter_copies_nothing_and_applies_at_rename(e2e, primary, database):
    create_sample_table(primary, database, "t", ROWS)
    writer = BackgroundWriter(primary, database, "t").start()
    try:
        mid, prepare = prepared(e2e, database, "ALTER TABLE t ADD COLUMN salary INT NULL")
        tablespace_before = tablespace_of(primary, database, "t")
        with PtOscWatcher(primary, database) as watcher:
            copy = copy_step(e2e, mid)
            detect = xcoms(prepare)["prepare.detect_instant_ddl"]
            assert detect["instant_ddl"] is True, detect
            assert e2e.state(mid).instant_ddl is True
            assert "this ALTER is instant on this server: no rows will be copied" in e2e.log_file(mid)

            copied = xcoms(copy)["copy"]
            assert copied["copy_percentage"] == 100 and copied["copy_outcome"] == "instant", copied
            assert float(e2e.migration(mid)["copy_percentage"]) == 100
            assert "salary" not in columns_of(primary, database, "t")  # not live before the human's rename
            assert "nothing to copy" in e2e.log_file(mid)

            human(e2e, "rename", str(mid))
            rename = one_run("rename")
        writer.stop()
        renamed = xcoms(rename)["rename"]
        assert renamed["instant_ddl_outcome"] == "applied"
        # Metadata only: the same InnoDB table and tablespace (a copy or rebuild makes new ones).
        assert tablespace_of(primary, database, "t") == tablespace_before
        assert renamed["instant_ddl_seconds"] >= 0, renamed
        assert watcher.polls > 20 and not watcher.shadow_seen and not watcher.triggers_seen
        done = e2e.migration(mid)
        assert done["status"] == 8
        assert all(done[k] is not None for k in ("table_rows_end", "table_size_end", "index_size_end"))
        assert "salary" in columns_of(primary, database, "t")
        assert tables_in(primary, database) == ["t"] and triggers_on(primary, database) == []
        assert writer.operations > 50 and writer.missing_rows() == set(), writer.errors[-3:]
        assert final_inserts(primary, database) == 1
        state = e2e.state(mid)
        assert state.copy_status == "instant" and "rename.instant_alter" in state.steps_done
        assert "ALGORITHM=INSTANT applied" in e2e.log_file(mid)
    finally:
        writer.stop()


def test_non_instant_alter_still_uses_ptosc(e2e, primary, database):
    create_sample_table(primary, database, "t", 3000)
    mid, prepare = prepared(e2e, database, "ALTER TABLE t MODIFY amount BIGINT NOT NULL")
    with PtOscWatcher(primary, database) as watcher:
        copy = copy_step(e2e, mid)
        detect = xcoms(prepare)["prepare.detect_instant_ddl"]
        assert detect["instant_ddl"] is False and "Cannot change column type" in detect["instant_ddl_reason"]
        assert xcoms(copy)["copy"]["copy_outcome"] == "copied"
        assert watcher.shadow_seen and len(watcher.triggers_seen) == 3
        human(e2e, "rename", str(mid))
        rename = one_run("rename")
    assert "instant_ddl_outcome" not in xcoms(rename).get("rename", {})
    assert e2e.migration(mid)["status"] == 8
    kind = primary.query("SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s "
                         "AND TABLE_NAME='t' AND COLUMN_NAME='amount'", (database,))[0][0]
    assert kind == "bigint" and final_inserts(primary, database) == 1


@pytest.mark.parametrize("how", ["setting", "custom_option"])
def test_prefer_instant_ddl_off_forces_ptosc(e2e, shift_settings, primary, database, how):
    create = {}
    if how == "setting":
        shift_settings(prefer_instant_ddl=False)
    else:
        create["custom_options"] = {"prefer_instant_ddl": "false"}
    create_sample_table(primary, database, "t", 3000)
    mid, prepare = prepared(e2e, database, "ALTER TABLE t ADD COLUMN salary INT NULL", **create)
    with PtOscWatcher(primary, database) as watcher:
        copy = copy_step(e2e, mid)
        detect = xcoms(prepare)["prepare.detect_instant_ddl"]
        assert detect["instant_ddl"] is False and "detection is skipped" in detect["instant_ddl_reason"], detect
        assert ("custom option" if how == "custom_option" else "setting") in detect["instant_ddl_reason"]
        assert xcoms(copy)["copy"]["copy_outcome"] == "copied"
        assert watcher.shadow_seen and watcher.triggers_seen
        human(e2e, "rename", str(mid))
        one_run("rename")
    assert e2e.migration(mid)["status"] == 8
    assert "salary" in columns_of(primary, database, "t") and final_inserts(primary, database) == 1
    assert [n for n in tables_in(primary, "_pending_drops") if n.endswith("_t")]  # a swap happened


def test_instant_refused_at_rename_falls_back_to_ptosc(e2e, primary, database):
    """The server changed between copy and rename: pt-osc copies inline in the rename, then the verified swap."""
    create_sample_table(primary, database, "t", 3000)
    mid, _ = prepared(e2e, database, "ALTER TABLE t ADD COLUMN salary INT NULL")
    copy = copy_step(e2e, mid)
    assert xcoms(copy)["copy"]["copy_outcome"] == "instant"
    before = primary.query("SELECT @@GLOBAL.innodb_instant_alter_column_allowed")[0][0]
    primary.execute("SET GLOBAL innodb_instant_alter_column_allowed = 'never'")
    try:
        writer = BackgroundWriter(primary, database, "t").start()
        with PtOscWatcher(primary, database) as watcher:
            human(e2e, "rename", str(mid))
            rename = one_run("rename")
        writer.stop()
    finally:
        primary.execute(f"SET GLOBAL innodb_instant_alter_column_allowed = '{before}'")
    assert xcoms(rename)["rename"]["instant_ddl_outcome"] == "fell_back"
    assert watcher.shadow_seen and watcher.triggers_seen
    assert e2e.migration(mid)["status"] == 8
    assert "salary" in columns_of(primary, database, "t")
    assert tables_in(primary, database) == ["t"] and triggers_on(primary, database) == []
    assert writer.missing_rows() == set() and final_inserts(primary, database) == 1
    log = e2e.log_file(mid)
    assert "refused ALGORITHM=INSTANT" in log and "falling back to pt-online-schema-change" in log
    state = e2e.state(mid)
    assert state.instant_ddl is False and state.copy_status == "succeeded" and "rename.swap" in state.steps_done
