"""The test servers themselves: real MariaDB replication and the real pt-osc."""

from __future__ import annotations

import subprocess

from tests.support.mariadb import TEST_PASSWORD, TEST_USER
from tests.support.tables import BackgroundWriter, content_checksum, create_sample_table, row_count


def test_replica_receives_primary_writes(cluster):
    primary, replica = cluster
    primary.execute("CREATE DATABASE repl", "CREATE TABLE repl.t (id INT PRIMARY KEY, v VARCHAR(20))",
                    "INSERT INTO repl.t VALUES (1, 'from-primary')")
    replica.wait_replica_caught_up(primary)
    assert replica.query("SELECT v FROM repl.t WHERE id = 1") == [("from-primary",)]
    assert replica.replica_status()["Slave_SQL_Running"] == "Yes"


def test_sample_table_loads_and_checksums(primary, database):
    create_sample_table(primary, database, "big", 20000)
    assert row_count(primary, database, "big") == 20000
    primary.execute(f"CREATE TABLE `{database}`.copy LIKE `{database}`.big",
                    f"INSERT INTO `{database}`.copy SELECT * FROM `{database}`.big")
    assert content_checksum(primary, database, "big") == content_checksum(primary, database, "copy")
    primary.execute(f"UPDATE `{database}`.copy SET amount = amount + 1 WHERE id = 7")
    assert content_checksum(primary, database, "big") != content_checksum(primary, database, "copy")


def test_background_writer_acknowledges_only_what_is_stored(primary, database):
    create_sample_table(primary, database, "w", 100)
    writer = BackgroundWriter(primary, database, "w").start()
    while writer.operations < 200:
        pass
    writer.stop()
    assert writer.acknowledged
    assert writer.missing_rows() == set()
    assert not writer.deleted & {r[0] for r in primary.query(f"SELECT id FROM `{database}`.w")}


def test_real_ptosc_dry_run_against_fixture_table(primary, database, ptosc, tmp_path):
    path, version = ptosc
    assert version.split(".")[0] == "3"
    create_sample_table(primary, database, "dry", 1000)
    defaults = tmp_path / "my.cnf"
    defaults.write_text(f"[client]\nuser={TEST_USER}\npassword={TEST_PASSWORD}\n")
    defaults.chmod(0o600)
    result = subprocess.run(
        [path, f"--defaults-file={defaults}", "--alter", "ADD COLUMN extra INT", "--dry-run",
         "--recursion-method=none", f"h={primary.host},P={primary.port},D={database},t=dry"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Dry run complete" in result.stdout
    assert "extra" not in [r[0] for r in primary.query(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s AND TABLE_NAME='dry'", (database,))]
