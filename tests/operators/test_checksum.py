"""The copy's content checksum (issue 17): real MariaDB, the real pt-osc, run through dag.test().

The copy ends by comparing the shadow table with the original chunk by chunk; a
chunk that differs is copied again once, and a difference that survives that is an
error (13) with the differing keys named, and nothing is swapped.
"""

from __future__ import annotations

import pytest

from shift_provider.codes import Status
from tests.support.airflow import run_dag, task_states, xcoms
from tests.support.tables import BackgroundWriter, columns_of, content_checksum, create_sample_table, q, triggers_on

ADD = "ALTER TABLE t ADD COLUMN extra INT NOT NULL DEFAULT 7, ADD INDEX idx_extra (extra)"


@pytest.fixture
def env(airflow_home, shift_settings, shift_api, primary, database, ptosc):
    return shift_settings(pt_osc_path=ptosc[0], checksum_chunk_seconds=0.05)


def started(shift_api, database: str, ddl: str = ADD) -> dict:
    created = shift_api.create(ddl, database=database, custom_options={"recursion_method": "none"})
    shift_api.drive_to_start(created["id"])
    return shift_api.claim(created["id"])


def test_a_good_copy_is_proven_chunk_by_chunk_under_writes(env, shift_api, primary, database):
    create_sample_table(primary, database, "t", 30000)
    conf = started(shift_api, database)
    writer = BackgroundWriter(primary, database, "t").start()
    try:
        run = run_dag("shift_test_copy", conf)
    finally:
        writer.stop()
    assert task_states(run) == {"copy": "success"}, shift_api.log_file(conf["id"])[-3000:]
    assert shift_api.migration(conf["id"])["status"] == Status.AWAITING_RENAME
    pushed = xcoms(run)["copy"]
    result = pushed["checksum"]
    assert result["rows"] >= 30000 and result["chunks"] > 3, result  # small chunks: 0.05 s target
    assert (result["chunks_repaired"], result["rows_repaired"]) == (0, 0)
    assert pushed["checksum_percentage"] == 100 and pushed["copy_percentage"] == 100
    assert shift_api.state(conf["id"]).checksum == result
    assert "checksum: the shadow table equals the original" in shift_api.log_file(conf["id"])
    assert writer.missing_rows() == set() and len(triggers_on(primary, database, "t")) == 3


def test_rows_lost_or_changed_behind_ptosc_are_repaired_and_the_swap_is_exact(env, shift_settings, shift_api,
                                                                             primary, database):
    create_sample_table(primary, database, "t", 12000)
    conf = started(shift_api, database)
    assert task_states(run_dag("shift_test_copy", conf)) == {"copy": "success"}
    before = content_checksum(primary, database, "t")
    original_columns = columns_of(primary, database, "t")
    # Behind pt-osc's back (no trigger fires on the shadow): rows lost and rows changed.
    shadow = shift_api.state(conf["id"]).new_table
    primary.execute(f"DELETE FROM {q(database)}.{q(shadow)} WHERE id BETWEEN 100 AND 149",
                    f"UPDATE {q(database)}.{q(shadow)} SET name = 'corrupted' WHERE id BETWEEN 9000 AND 9029")
    assert content_checksum(primary, database, shadow, original_columns) != before

    shift_settings(checksum_at_rename=True, checksum_chunk_seconds=0.05)
    assert shift_api.human("rename", conf["id"]).status_code == 200
    run = run_dag("shift_test_rename", shift_api.claim(conf["id"]))
    assert task_states(run) == {"rename": "success"}
    result = xcoms(run)["rename"]["checksum"]
    assert result["chunks_repaired"] >= 2 and result["rows_repaired"] >= 80, result
    assert shift_api.migration(conf["id"])["status"] == Status.COMPLETED
    assert content_checksum(primary, database, "t", original_columns) == before
    assert "extra" in columns_of(primary, database, "t")


def test_a_conversion_that_changes_values_is_an_error_naming_the_key_and_nothing_is_swapped(
        env, shift_api, primary, database):
    primary.execute(f"CREATE TABLE {q(database)}.t (id INT PRIMARY KEY, big BIGINT NOT NULL)",
                    f"INSERT INTO {q(database)}.t SELECT seq, 16777216 + seq FROM {q(database)}.seq_1_to_3000")
    before = content_checksum(primary, database, "t")
    conf = started(shift_api, database, "ALTER TABLE t MODIFY big FLOAT NOT NULL")  # FLOAT keeps 24 bits
    run = run_dag("shift_test_copy", conf)
    assert task_states(run) == {"copy": "failed"}
    migration = shift_api.migration(conf["id"])
    assert migration["status"] == Status.ERROR, migration
    assert "even after copying it again" in migration["error_message"], migration["error_message"]
    assert "first differing keys: [1," in migration["error_message"], migration["error_message"]
    assert "bigint" in primary.query(f"SHOW CREATE TABLE {q(database)}.t")[0][1]
    assert content_checksum(primary, database, "t") == before


def test_a_new_unique_key_over_duplicates_cannot_lose_rows(env, shift_settings, shift_api, ptosc, primary,
                                                            database):
    # pt-osc's own guard off (as `nocheckalter`-like tooling may do): its INSERT IGNORE drops the duplicates.
    shift_settings(pt_osc_path=ptosc[0], checksum_chunk_seconds=0.05,
                   ptosc_extra_args=["--no-check-unique-key-change"])
    create_sample_table(primary, database, "t", 3000)  # amount = seq % 1000: each value three times
    before = content_checksum(primary, database, "t")
    conf = started(shift_api, database, "ALTER TABLE t ADD UNIQUE KEY u_amount (amount)")
    run = run_dag("shift_test_copy", conf)
    assert task_states(run) == {"copy": "failed"}
    migration = shift_api.migration(conf["id"])
    assert migration["status"] == Status.ERROR
    assert "Duplicate entry" in migration["error_message"] and "first differing keys" in migration["error_message"]
    assert content_checksum(primary, database, "t") == before
    assert "u_amount" not in primary.query(f"SHOW CREATE TABLE {q(database)}.t")[0][1]
