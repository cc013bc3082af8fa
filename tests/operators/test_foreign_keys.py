"""A child table with foreign keys through the whole shift_migration DAG, when the settings allow it.

Real MariaDB, the real pt-osc, the real shift API: one run per migration (prepare, the
human waits with a DBA thread approving, starting and renaming, copy, rename). pt-osc renames
the shadow table's constraints (``test_fk`` -> ``_test_fk``); the rename gives them their
names back, and the old table reaches pending drops with no foreign key, so deleting a
parent row never fails on it (1451) and a second old table cannot collide there.
"""

from __future__ import annotations

import MySQLdb
import pytest

from shift_provider.contract.codes import Status
from tests.support.airflow import task_states, xcoms
from tests.support.e2e import run_migration
from tests.support.tables import columns_of, content_checksum, q, tables_in, triggers_on

ROWS = 600
PARENTS = 40


@pytest.fixture
def fk_env(airflow_home, shift_settings, shift_api, ptosc, primary, database):
    pending = database + "_pd"
    shift_settings(allow_foreign_keys=True, prefer_instant_ddl=False, pt_osc_path=ptosc[0], pending_drops_db=pending,
                   ptosc_extra_args=["--chunk-size=200"])
    db = q(database)
    primary.execute(
        f"CREATE TABLE {db}.parent (id INT PRIMARY KEY)",
        f"INSERT INTO {db}.parent SELECT seq FROM {db}.seq_1_to_{PARENTS}",
        f"CREATE TABLE {db}.child (id INT AUTO_INCREMENT PRIMARY KEY, pid INT NOT NULL, note VARCHAR(20), "
        f"CONSTRAINT test_fk FOREIGN KEY (pid) REFERENCES {db}.parent (id) ON DELETE RESTRICT)",
        f"INSERT INTO {db}.child (pid, note) SELECT 1 + seq % {PARENTS}, CONCAT('n', seq) FROM {db}.seq_1_to_{ROWS}")
    yield pending
    primary.execute(f"DROP DATABASE IF EXISTS {q(pending)}")


def foreign_keys(server, database: str, table: str) -> list[str]:
    return [r[0] for r in server.query(
        "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
        "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s ORDER BY 1", (database, table))]


def run_through_the_dag(api, database: str, ddl: str) -> int:
    """One shift_migration run from prepare to rename; a DBA approves, starts and renames as it waits."""
    mid = api.create(ddl=ddl, database=database, custom_options={"recursion_method": "none"})["id"]
    script = {Status.AWAITING_APPROVAL: lambda: api.human("approve", mid, runtype="long"),
              Status.AWAITING_START: lambda: api.human("start", mid),
              Status.AWAITING_RENAME: lambda: api.human("rename", mid)}
    run = run_migration(api.claim(mid), api, script)
    states = task_states(run)
    assert states["copy"] == "success" and states["rename"] == "success", (states, api.migration(mid))
    assert api.migration(mid)["status"] == Status.COMPLETED, api.migration(mid)
    return mid


def test_a_child_table_is_altered_with_its_constraint_names_and_retired_without_foreign_keys(
        fk_env, shift_api, primary, database):
    pending, db = fk_env, q(database)
    retired = []
    for ddl in ("ALTER TABLE child ADD COLUMN extra INT NULL",
                # the same table again: its second old table meets the first in pending drops
                "ALTER TABLE child ADD COLUMN pid2 INT NULL, ADD CONSTRAINT fk_two FOREIGN KEY (pid2) "
                "REFERENCES parent (id)"):
        original = columns_of(primary, database, "child")
        mid = run_through_the_dag(shift_api, database, ddl)
        state = shift_api.state(mid)
        where, old = state.retired_to.split(".", 1)
        assert where == pending and old == state.old_table, state
        retired.append(old)
        # The new table holds what the old one held; the old one holds no foreign key.
        assert content_checksum(primary, database, "child", original) == content_checksum(primary, pending, old,
                                                                                          original)
        assert foreign_keys(primary, pending, old) == []
        assert triggers_on(primary, database) == []
        assert sorted(tables_in(primary, database)) == ["child", "parent"]

    # The names came out as asked: pt-osc's `_test_fk` is `test_fk` again, the added one is `fk_two`.
    assert foreign_keys(primary, database, "child") == ["fk_two", "test_fk"]
    assert "CONSTRAINT `test_fk` FOREIGN KEY (`pid`) REFERENCES `parent` (`id`)" in \
        primary.query(f"SHOW CREATE TABLE {db}.child")[0][1]
    assert sorted(tables_in(primary, pending)) == sorted(retired)  # both old tables, no collision

    # A parent row only the retired tables still point at can be deleted (no 1451 naming them) ...
    primary.execute(f"DELETE FROM {db}.child WHERE pid = 7", f"DELETE FROM {db}.parent WHERE id = 7")
    assert primary.query(f"SELECT COUNT(*) FROM {q(pending)}.{q(retired[0])} WHERE pid = 7")[0][0] > 0
    # ... while the live table's constraint still holds.
    with pytest.raises(MySQLdb.IntegrityError) as refused:
        primary.execute(f"DELETE FROM {db}.parent WHERE id = 8")
    assert refused.value.args[0] == 1451 and "`child`" in str(refused.value), refused.value
    with pytest.raises(MySQLdb.IntegrityError):
        primary.execute(f"INSERT INTO {db}.child (pid, note) VALUES (7, 'orphan')")

    # A canceled copy's shadow table (constraints `_test_fk`, `_fk_two`) reaches pending drops without them.
    mid = shift_api.create(ddl="ALTER TABLE child ADD COLUMN later INT NULL", database=database,
                           custom_options={"recursion_method": "none"})["id"]
    shift_api.drive_to_start(mid)

    def cancel_once_copied():
        assert f"_child_new_{mid}" in tables_in(primary, database)
        assert shift_api.human("cancel", mid).status_code == 200

    run = run_migration(shift_api.claim(mid), shift_api, {Status.AWAITING_RENAME: cancel_once_copied})
    assert task_states(run)["copy"] == "success" and task_states(run)["await_rename"] == "success"
    assert "canceled in shift while awaiting rename" in xcoms(run)["await_rename"]["migration_ended"]
    assert shift_api.migration(mid)["status"] == Status.CANCELED
    [shadow] = [t for t in tables_in(primary, pending) if t not in retired]
    assert shadow.endswith(f"_child_new_{mid}") and foreign_keys(primary, pending, shadow) == []
    assert foreign_keys(primary, database, "child") == ["fk_two", "test_fk"]
    assert sorted(tables_in(primary, database)) == ["child", "parent"] and triggers_on(primary, database) == []


def test_a_parent_table_is_refused_at_prepare_even_when_foreign_keys_are_allowed(fk_env, shift_api, primary,
                                                                                database):
    mid = shift_api.create(ddl="ALTER TABLE parent ADD COLUMN label INT NULL", database=database,
                           custom_options={"recursion_method": "none"})["id"]
    run = run_migration(shift_api.claim(mid))  # step mode: a refused prepare ends the run
    assert "failed" in task_states(run).values(), task_states(run)
    migration = shift_api.migration(mid)
    assert migration["status"] == Status.FAILED, migration
    assert "`test_fk`" in migration["error_message"] and "reference it" in migration["error_message"], migration
    assert triggers_on(primary, database) == [] and sorted(tables_in(primary, database)) == ["child", "parent"]
