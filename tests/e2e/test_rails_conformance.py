"""The runner against the reference API answering exactly as the Rails controller does (issue 13).

Rails (``ui/app/controllers/api/v1/migrations_controller.rb``) adds table, mode,
action, host and port only to ``staged``, lists the 5 most recently updated staged
migrations, drops those whose DDL does not parse and serves at most 2; every other
answer is the bare row. These tests pin that shape on the reference server, and run
the machine paths that other modules do not already run through the real DAGs
(``test_migration_paths``: long ALTER, short run, CREATE, DROP; ``test_concurrent_paths``:
pause, resume, cancel) against it: many staged migrations, the stop file's offer, and
an error resumed by a human.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.support.airflow import task_states
from tests.support.e2e import claim_and_run, claim_only, spawn_migration_run
from tests.support.polling import wait_for
from tests.support.shift_api import shift_client
from tests.support.tables import columns_of, content_checksum, create_sample_table, tables_in, triggers_on

DERIVED = {"table", "host", "port", "mode", "action"}
ALTER = "ALTER TABLE t ADD COLUMN c INT NULL, ADD INDEX idx_c (c)"
SLOW_COPY = ["--chunk-size=100", "--chunk-size-limit=0", "--sleep=0.05"]


def human(api, *args: str) -> None:
    out = shift_client(*args, url=api.url)
    assert out.returncode == 0, out.stderr


def staged_ids(api) -> list[int]:
    return [m["id"] for m in api.request("GET", "migrations/staged").json()]


@pytest.fixture
def e2e(airflow_home, shift_api, shift_settings):
    shift_settings()
    return shift_api


# -- the answers' shape --------------------------------------------------------------------------

def test_only_staged_carries_the_derived_fields(shift_api):
    created = shift_api.create(ALTER, database="app", custom_options={"max_replication_lag": "2"})
    mid = created["id"]
    listed = {m["id"]: m for m in shift_api.request("GET", "migrations/staged").json()}[mid]
    assert (listed["table"], listed["mode"], listed["action"], listed["runtype"]) == ("t", 0, 2, 1)
    assert isinstance(listed["host"], str) and isinstance(listed["port"], int)

    answers = {"create": created, "show": shift_api.show(mid)["migration"],
               "unstage": shift_api.machine("unstage", mid)}
    assert shift_api.machine("unstage", mid) == {}, "a lost claim answers {}"
    answers["put"] = shift_api.request("PUT", f"migrations/{mid}", {"table_rows_start": 10,
                                                                    "copy_percentage": "45.7"}).json()
    answers["next_step"] = shift_api.machine("next_step", mid)
    answers["fail"] = shift_api.machine("fail", mid, error_message="no")
    for name, row in answers.items():
        assert not DERIVED & set(row), f"{name} answered derived fields: {sorted(DERIVED & set(row))}"
        assert row["id"] == mid and isinstance(row["status"], int) and isinstance(row["staged"], bool), name
        assert isinstance(row["lock_version"], int) and isinstance(row["custom_options"], str), name
    assert answers["put"]["copy_percentage"] == 45, "copy_percentage is an integer column in Rails"
    assert (answers["next_step"]["status"], answers["fail"]["status"]) == (1, 10)
    assert json.loads(answers["show"]["custom_options"]) == {"max_replication_lag": "2"}
    assert shift_api.show(mid)["available_actions"] == []


def test_staged_serves_two_newest_and_drops_unparseable_ddl(shift_api):
    ids = [shift_api.create(f"ALTER TABLE t{i} ADD COLUMN c INT", database="app")["id"] for i in range(4)]
    assert staged_ids(shift_api) == [ids[3], ids[2]], "newest update first, 2 at most"
    shift_api.request("PUT", f"migrations/{ids[0]}", {"table_rows_start": 1})  # an update moves it up
    assert staged_ids(shift_api) == [ids[0], ids[3]]
    # A DDL that no longer parses (edited in the database): dropped from the list, still staged.
    conn = sqlite3.connect(str(shift_api.db_path))
    with conn:
        conn.execute("UPDATE migrations SET ddl_statement = 'UPDATE t SET a = 1', updated_at = "
                     "'2999-01-01T00:00:00.000000Z' WHERE id = ?", (ids[0],))
    conn.close()
    assert staged_ids(shift_api) == [ids[3], ids[2]]
    assert shift_api.migration(ids[0])["staged"] is True


# -- machine paths through the real DAGs -----------------------------------------------------------

def test_seven_staged_migrations_are_all_claimed_and_run(e2e, primary, database):
    """Newest first and 2 per answer: every claim moves the rest up; none starves."""
    ids = [e2e.create(f"CREATE TABLE n{i} (id INT PRIMARY KEY)", database=database)["id"] for i in range(7)]
    passes = 0
    while set(staged_ids(e2e)) & set(ids):
        passes += 1
        assert passes <= 7, f"still staged after {passes} passes: {staged_ids(e2e)}"
        runs = claim_and_run()
        assert runs and all(str(r.state) == "success" for _, r in runs), [(i, task_states(r)) for i, r in runs]
    assert [e2e.migration(mid)["status"] for mid in ids] == [1] * 7, "each one prepared"
    assert tables_in(primary, database) == [], "prepare creates and drops a CREATE, nothing stays"


def test_stop_file_offers_the_running_copy_back_and_a_later_claim_completes_it(
        airflow_home, shift_api, shift_settings, primary, database, tmp_path):
    import os

    settings = shift_settings(ptosc_extra_args=SLOW_COPY)
    create_sample_table(primary, database, "t", 6000)
    before = content_checksum(primary, database, "t")
    mid = shift_api.create(ALTER, database=database)["id"]
    assert [str(r.state) for _, r in claim_and_run()] == ["success"]
    human(shift_api, "approve", str(mid), "--runtype", "long")
    human(shift_api, "start", str(mid))
    (_, conf), = claim_only()
    copy = spawn_migration_run(conf, tmp_path / "worker-a")
    wait_for(lambda: (shift_api.migration(mid)["copy_percentage"] or 0) > 0, 60, "the copy to make progress")
    open(settings.stop_file_path, "w").close()  # the runner's stop file: hand running copies back
    assert copy.wait(timeout=60) == 0, copy.log_path.read_text()[-3000:]
    offered = shift_api.migration(mid)
    assert (offered["status"], offered["staged"], offered["run_host"]) == (3, True, None), offered
    # (While the stop file exists the sensor waits on the triggerer and claims nothing.)

    os.remove(settings.stop_file_path)
    assert [str(r.state) for _, r in claim_and_run()] == ["success"]
    assert shift_api.migration(mid)["status"] == 4
    human(shift_api, "rename", str(mid))
    assert [str(r.state) for _, r in claim_and_run()] == ["success"]
    assert shift_api.migration(mid)["status"] == 8
    old = [n for n in tables_in(primary, "_pending_drops") if n.endswith("_t")]
    assert content_checksum(primary, "_pending_drops", old[-1]) == before
    assert "c" in columns_of(primary, database, "t") and triggers_on(primary, database) == []


def test_copy_error_is_resumable_by_a_human_and_then_completes(e2e, primary, database):
    create_sample_table(primary, database, "t", 2000)
    mid = e2e.create(ALTER, database=database)["id"]
    assert [str(r.state) for _, r in claim_and_run()] == ["success"]
    human(e2e, "approve", str(mid), "--runtype", "long")
    human(e2e, "start", str(mid))
    # A DBA meddles after approval: without a primary key pt-osc cannot copy.
    primary.execute(f"ALTER TABLE `{database}`.t DROP PRIMARY KEY, MODIFY id BIGINT UNSIGNED NOT NULL")
    runs = claim_and_run()
    assert [str(r.state) for _, r in runs] == ["failed"], [task_states(r) for _, r in runs]
    errored = e2e.migration(mid)
    assert errored["status"] == 13 and "no primary or unique key" in errored["error_message"].lower(), errored

    primary.execute(f"ALTER TABLE `{database}`.t ADD PRIMARY KEY (id)")
    human(e2e, "resume", str(mid))
    assert [str(r.state) for _, r in claim_and_run()] == ["success"]
    human(e2e, "rename", str(mid))
    assert [str(r.state) for _, r in claim_and_run()] == ["success"]
    assert e2e.migration(mid)["status"] == 8 and "c" in columns_of(primary, database, "t")
    assert triggers_on(primary, database) == []
