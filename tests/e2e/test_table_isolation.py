"""Issue 14: the runner touches only its migration's table and that migration's own leftovers.

Each case runs through the real DAGs (sensor claim, then the shift_migration run it
queued) on real MariaDB with the real pt-osc, the human steps done with shift-client.
"""

from __future__ import annotations

import pytest

from shift_provider.engine.final_insert import BOOKKEEPING_DB
from tests.support.airflow import task_states, xcoms
from tests.support.e2e import claim_and_run, step_of
from tests.support.shift_api import shift_client
from tests.support.tables import columns_of, content_checksum, create_sample_table, q, tables_in, triggers_on


def human(api, *args: str) -> None:
    out = shift_client(*args, url=api.url)
    assert out.returncode == 0, out.stderr


def one_run(step: str):
    runs = claim_and_run()
    assert len(runs) == 1, runs
    run_id, dag_run = runs[0]
    assert step_of(dag_run) == step, (run_id, task_states(dag_run))
    return dag_run


def prepared(api, database: str, ddl: str, final_insert: str = "") -> int:
    mid = api.create(ddl=ddl, database=database, final_insert=final_insert)["id"]
    run = one_run("prepare")
    assert str(run.state) == "success", task_states(run)
    assert api.migration(mid)["status"] == 1
    return mid


def started(api, mid: int) -> None:
    human(api, "approve", str(mid), "--runtype", "long")
    human(api, "start", str(mid))


def column_type(primary, database: str, table: str, column: str) -> str:
    return primary.query("SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s AND "
                         "TABLE_NAME=%s AND COLUMN_NAME=%s", (database, table, column))[0][0]


def index_names(primary, database: str, table: str) -> set[str]:
    return {r[0] for r in primary.query("SELECT INDEX_NAME FROM information_schema.STATISTICS "
                                        "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s", (database, table))}


@pytest.fixture
def e2e(airflow_home, shift_api, shift_settings, primary, database):
    shift_settings()
    return shift_api


def with_legacy_column(primary, database: str, rows: int) -> None:
    """``t`` (sample rows plus ``a`` and ``legacy``) and an unrelated ``other`` table."""
    create_sample_table(primary, database, "t", rows)
    primary.execute(f"ALTER TABLE {q(database)}.t ADD COLUMN a INT NOT NULL DEFAULT 5, "
                    "ADD COLUMN legacy VARCHAR(8) NULL")
    create_sample_table(primary, database, "other", 500)


# --- case 2: one migration per table at a time --------------------------------------------

def test_second_copy_is_refused_while_the_first_awaits_rename_and_the_first_completes_with_its_schema(
        e2e, primary, database):
    with_legacy_column(primary, database, 2000)
    other_before = content_checksum(primary, database, "other")
    a = prepared(e2e, database, "ALTER TABLE t MODIFY a BIGINT NOT NULL DEFAULT 5")
    b = prepared(e2e, database, "ALTER TABLE t DROP COLUMN legacy, ADD INDEX ia (a)")
    c = prepared(e2e, database, "ALTER TABLE t ADD COLUMN c2 INT NULL")  # to be approved as a short run

    started(e2e, a)
    assert str(one_run("copy").state) == "success"
    assert e2e.migration(a)["status"] == 4
    shadow_a = f"_t_new_{a}"
    a_triggers = sorted(triggers_on(primary, database, "t"))
    assert len(a_triggers) == 3 and shadow_a in tables_in(primary, database)
    shadow_before = content_checksum(primary, database, shadow_a)

    started(e2e, b)
    copy_b = one_run("copy")
    assert str(copy_b.state) == "failed", task_states(copy_b)
    refused = e2e.migration(b)
    assert refused["status"] == 13, refused  # error: resumable once A is done
    assert f"carries the copy leftovers of migration {a}" in refused["error_message"], refused["error_message"]
    assert shadow_a in refused["error_message"]
    # A's leftovers untouched, no shadow table of B's.
    assert sorted(triggers_on(primary, database, "t")) == a_triggers
    assert content_checksum(primary, database, shadow_a) == shadow_before
    assert f"_t_new_{b}" not in tables_in(primary, database)

    # A short run on the same table is refused too: A's swap would lose its change.
    human(e2e, "approve", str(c), "--runtype", "short")
    human(e2e, "start", str(c))
    assert str(one_run("run_ddl").state) == "failed"
    short = e2e.migration(c)
    assert short["status"] == 10 and f"migration {a}" in short["error_message"], short
    assert "c2" not in columns_of(primary, database, "t")
    assert sorted(triggers_on(primary, database, "t")) == a_triggers

    # One filed now fails its prepare with a message naming A (pt-osc's dry run would only say "has triggers").
    d = e2e.create(ddl="ALTER TABLE t ADD INDEX ix_amount_a (amount, a)", database=database)["id"]
    assert str(one_run("prepare").state) == "failed"
    assert f"carries the copy leftovers of migration {a}" in e2e.migration(d)["error_message"]
    assert sorted(triggers_on(primary, database, "t")) == a_triggers

    human(e2e, "rename", str(a))
    rename = one_run("rename")
    assert str(rename.state) == "success", task_states(rename)
    assert e2e.migration(a)["status"] == 8
    assert column_type(primary, database, "t", "a").startswith("bigint")
    assert "legacy" in columns_of(primary, database, "t") and "ia" not in index_names(primary, database, "t")
    assert triggers_on(primary, database) == [] and tables_in(primary, database) == ["other", "t"]
    assert content_checksum(primary, database, "other") == other_before

    # With A done, B resumes and runs on the table as A left it.
    human(e2e, "resume", str(b))
    assert str(one_run("copy").state) == "success" and e2e.migration(b)["status"] == 4
    human(e2e, "rename", str(b))
    assert str(one_run("rename").state) == "success" and e2e.migration(b)["status"] == 8
    assert "legacy" not in columns_of(primary, database, "t") and "ia" in index_names(primary, database, "t")
    assert column_type(primary, database, "t", "a").startswith("bigint")


def test_canceling_an_instant_path_migration_leaves_the_other_migrations_copy_alone(e2e, primary, database):
    with_legacy_column(primary, database, 2000)
    other_before = content_checksum(primary, database, "other")
    a = prepared(e2e, database, "ALTER TABLE t MODIFY a BIGINT NOT NULL DEFAULT 5")
    b = prepared(e2e, database, "ALTER TABLE t ADD COLUMN note VARCHAR(10) NULL")  # instant on MariaDB 10.11

    started(e2e, b)
    copy_b = one_run("copy")
    assert xcoms(copy_b)["copy"]["copy_outcome"] == "instant" and e2e.migration(b)["status"] == 4
    started(e2e, a)
    assert str(one_run("copy").state) == "success" and e2e.migration(a)["status"] == 4
    a_triggers = sorted(triggers_on(primary, database, "t"))
    shadow_before = content_checksum(primary, database, f"_t_new_{a}")

    human(e2e, "cancel", str(b))
    cancel = one_run("cancel")
    assert str(cancel.state) == "success", task_states(cancel)
    assert sorted(triggers_on(primary, database, "t")) == a_triggers and len(a_triggers) == 3
    assert content_checksum(primary, database, f"_t_new_{a}") == shadow_before

    human(e2e, "rename", str(a))
    assert str(one_run("rename").state) == "success" and e2e.migration(a)["status"] == 8
    assert column_type(primary, database, "t", "a").startswith("bigint") and "note" not in columns_of(
        primary, database, "t")
    assert content_checksum(primary, database, "other") == other_before


# --- case 3: a column added while the migration awaits rename survives ---------------------------

def test_rename_refuses_to_swap_away_a_column_added_since_the_copy(e2e, primary, database):
    create_sample_table(primary, database, "t", 3000)
    c = prepared(e2e, database, "ALTER TABLE t ADD INDEX idx_name (name)")
    started(e2e, c)
    assert str(one_run("copy").state) == "success" and e2e.migration(c)["status"] == 4

    # A DBA (or a short run) adds `vip` and sets it on 301 rows while C awaits rename.
    primary.execute(f"ALTER TABLE {q(database)}.t ADD COLUMN vip TINYINT NULL")
    primary.execute(f"UPDATE {q(database)}.t SET vip = 1 WHERE id <= 301")
    before = content_checksum(primary, database, "t")

    human(e2e, "rename", str(c))
    rename = one_run("rename")
    assert str(rename.state) == "failed", task_states(rename)
    failed = e2e.migration(c)
    assert failed["status"] == 10
    message = failed["error_message"]
    assert "refusing to swap" in message and "column `vip` was added" in message, message
    assert "vip" in columns_of(primary, database, "t")
    assert content_checksum(primary, database, "t") == before
    assert primary.query(f"SELECT COUNT(*) FROM {q(database)}.t WHERE vip = 1")[0][0] == 301
    assert "idx_name" not in index_names(primary, database, "t")  # nothing swapped


# --- cases 4 and 6: the final insert -------------------------------------------------------

@pytest.mark.parametrize("engine, keys", [("MyISAM", ""), ("Aria", ", UNIQUE KEY u_note (note)")])
def test_final_insert_into_a_non_transactional_table_runs_once_and_never_in_prepare(
        e2e, primary, database, engine, keys):
    create_sample_table(primary, database, "t", 1000)
    primary.execute(f"CREATE TABLE {q(database)}.audit (id INT AUTO_INCREMENT PRIMARY KEY, "
                    f"note VARCHAR(64) NOT NULL{keys}) ENGINE={engine}")
    mid = e2e.create(ddl="ALTER TABLE t ADD INDEX idx_name (name)", database=database,
                     final_insert="INSERT INTO audit (note) VALUES ('t altered')")["id"]
    prepare = one_run("prepare")
    assert str(prepare.state) == "success", task_states(prepare)
    assert e2e.migration(mid)["status"] == 1
    assert primary.query(f"SELECT COUNT(*) FROM {q(database)}.audit")[0][0] == 0

    started(e2e, mid)
    assert str(one_run("copy").state) == "success"
    human(e2e, "rename", str(mid))
    rename = one_run("rename")
    assert str(rename.state) == "success", task_states(rename)
    assert e2e.migration(mid)["status"] == 8
    assert [tuple(r) for r in primary.query(f"SELECT note FROM {q(database)}.audit")] == [("t altered",)]
    assert "idx_name" in index_names(primary, database, "t")


def test_final_insert_naming_the_added_column_passes_prepare_and_runs_once(e2e, primary, database):
    create_sample_table(primary, database, "t", 1000)
    before = content_checksum(primary, database, "t")
    insert = "INSERT INTO t (name, amount, created, vip) VALUES ('final', 1, '2021-01-01', 1)"
    mid = e2e.create(ddl="ALTER TABLE t ADD COLUMN vip TINYINT NOT NULL DEFAULT 0, ADD INDEX idx_vip (vip)",
                     database=database, final_insert=insert)["id"]
    prepare = one_run("prepare")
    assert str(prepare.state) == "success", task_states(prepare)
    assert e2e.migration(mid)["status"] == 1
    assert content_checksum(primary, database, "t") == before  # prepare changed nothing
    assert [n for n in tables_in(primary, BOOKKEEPING_DB) if n.startswith("_final_insert_probe_")] == []

    started(e2e, mid)
    assert str(one_run("copy").state) == "success"
    human(e2e, "rename", str(mid))
    rename = one_run("rename")
    assert str(rename.state) == "success", task_states(rename)
    assert e2e.migration(mid)["status"] == 8
    assert tuple(primary.query(f"SELECT COUNT(*), SUM(vip) FROM {q(database)}.t WHERE name = 'final'")[0]) == (1, 1)
    assert primary.query(f"SELECT COUNT(*) FROM {q(database)}.t")[0][0] == 1001
