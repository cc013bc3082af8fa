"""A table of more than a million rows through the real DAGs, its copy proven by the checksum (issue 17).

Narrow rows keep it quick; a background writer runs from before the copy until after
the swap, so the checksum compares tables that change under it (pt-osc's triggers
keep the shadow in sync; each chunk is read from both tables in one snapshot).
"""

from __future__ import annotations

from tests.support.airflow import task_states, xcoms
from tests.support.e2e import claim_and_run
from tests.support.shift_api import shift_client
from tests.support.tables import BackgroundWriter, columns_of, content_checksum, q, tables_in, triggers_on

ROWS = 1_050_000


def human(api, *args: str) -> None:
    out = shift_client(*args, url=api.url)
    assert out.returncode == 0, out.stderr


def test_a_million_row_copy_is_checksummed_under_writes_and_swapped(airflow_home, shift_api, shift_settings,
                                                                    primary, database):
    pending = f"{database}_pd"
    shift_settings(pending_drops_db=pending)
    # Narrow rows, and the columns BackgroundWriter writes (name, amount, created).
    primary.execute(
        f"CREATE TABLE {q(database)}.t (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
        " name VARCHAR(16) NOT NULL, amount INT NOT NULL, created DATETIME NOT NULL) ENGINE=InnoDB",
        f"INSERT INTO {q(database)}.t (name, amount, created) SELECT 'n', seq % 1000, '2020-01-01'"
        f" FROM {q(database)}.seq_1_to_{ROWS}")
    mid = shift_api.create("ALTER TABLE t ADD COLUMN flag TINYINT NOT NULL DEFAULT 1, ADD INDEX idx_amount (amount)",
                           database=database, custom_options={"recursion_method": "none"})["id"]
    assert [str(r.state) for _, r in claim_and_run()] == ["success"]
    human(shift_api, "approve", str(mid), "--runtype", "long")
    human(shift_api, "start", str(mid))
    writer = BackgroundWriter(primary, database, "t", interval=0.01).start()
    try:
        (_, copy), = claim_and_run()  # pt-osc's copy, then the checksum, both under writes
    finally:
        writer.stop()
    assert str(copy.state) == "success", task_states(copy)
    result = xcoms(copy)["copy"]["checksum"]
    assert result["rows"] >= ROWS and result["chunks"] > 10, result
    assert writer.operations > 100
    assert shift_api.migration(mid)["status"] == 4
    human(shift_api, "rename", str(mid))
    (_, rename), = claim_and_run()
    assert str(rename.state) == "success", task_states(rename)
    assert shift_api.migration(mid)["status"] == 8
    assert writer.missing_rows() == set()
    assert "flag" in columns_of(primary, database, "t") and triggers_on(primary, database) == []
    (old,) = tables_in(primary, pending)
    columns = ["id", "name", "amount", "created"]
    assert content_checksum(primary, database, "t", columns) == content_checksum(primary, pending, old, columns)
    primary.execute(f"DROP DATABASE {q(pending)}")
