"""The reference shift API's state machine over real HTTP: humans by shift-client, the runner by the hook."""

from __future__ import annotations

import json

import pytest

from shift_provider.contract.codes import FileType, Status
from shift_provider.exceptions import ShiftApiError
from shift_provider.hooks.shift_api import ShiftApiHook
from tests.support.shift_api import ShiftApiServer, shift_client

ALTER = "ALTER TABLE employees ADD COLUMN salary INT"


def _client_ok(server: ShiftApiServer, *args: str) -> dict:
    result = shift_client(*args, url=server.url)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_one_migration_through_its_whole_life(shift_api):
    hook = ShiftApiHook(retry_limit=2, retry_delay=0.05)
    created = _client_ok(shift_api, "create", "--cluster", "primary", "--database", "appname",
                         "--ddl", ALTER, "--custom-options", '{"max_threads_running": "150"}')
    mid = created["id"]
    assert (created["status"], created["staged"]) == (0, True)
    assert not {"table", "host", "port", "mode", "action"} & set(created), "a bare Rails row"
    assert json.loads(created["custom_options"]) == {"max_threads_running": "150"}
    seen_versions = [created["lock_version"]]

    def status_after(expect_status: int, expect_staged: bool) -> dict:
        migration = hook.show(mid)["migration"]
        assert (migration["status"], migration["staged"]) == (expect_status, expect_staged)
        assert migration["lock_version"] > seen_versions[-1], "every change moves lock_version"
        seen_versions.append(migration["lock_version"])
        return migration

    # 0 preparing: the runner finds it staged (host/port from the cluster registry), claims it, moves it on.
    staged = {m["id"]: m for m in hook.staged()}
    assert staged[mid]["host"] == "127.0.0.1" and staged[mid]["runtype"] == 1
    assert hook.unstage(mid).stolen is False
    status_after(0, False)
    hook.update(mid, table_rows_start=1000, table_size_start=16384, index_size_start=0)
    hook.next_step(mid)
    assert status_after(1, False)["table_rows_start"] == 1000

    # 1 -> 2 -> 3 by a human.
    assert _client_ok(shift_api, "approve", str(mid), "--runtype", "long", "--approver", "alice")["status"] == 2
    status_after(2, False)
    assert _client_ok(shift_api, "start", str(mid))["status"] == 3
    status_after(3, True)

    # 3 copy: claim, pin, report, log, state, next_step -> 4, unpin.
    assert hook.unstage(mid).stolen is False
    hook.update(mid, run_host="runner-1", copy_percentage=45)
    hook.append_to_file(mid, "Copying 45%\n")
    hook.append_to_file(mid, "Copying 100%\n")
    hook.write_file(mid, '{"new_table": "_employees_new"}')
    hook.write_file(mid, '{"new_table": "_employees_new", "triggers": 3}')
    hook.next_step(mid)
    hook.unpin_run_host(mid)
    migration = status_after(4, False)
    assert migration["run_host"] is None and migration["copy_percentage"] == 45
    assert hook.get_file(mid, FileType.LOG) == "Copying 45%\nCopying 100%\n"
    assert hook.get_file(mid, FileType.STATE) == '{"new_table": "_employees_new", "triggers": 3}'

    # 4 -> 5 by a human, 5 -> 8 by the runner.
    assert _client_ok(shift_api, "rename", str(mid))["status"] == 5
    status_after(5, True)
    assert hook.unstage(mid).stolen is False
    hook.update(mid, table_rows_end=1000, table_size_end=16384, index_size_end=0)
    hook.complete(mid)
    final = status_after(8, False)
    assert final["table_rows_end"] == 1000 and final["completed_at"]
    assert hook.show(mid)["available_actions"] == []
    assert mid not in {m["id"] for m in hook.staged()}


# Forbidden human transitions: (name, status to reach first, step, extra params, errors expected).
FORBIDDEN = [
    ("approve while preparing", 0, "approve", {}, ["Invalid action."]),
    ("approve with a stale lock_version", 1, "approve", {"lock_version": 0}, ["Incorrect lock_version supplied."]),
    ("approve a stale lock at the wrong status", 0, "approve", {"lock_version": 99},
     ["Invalid action.", "Incorrect lock_version supplied."]),
    ("approve with an unknown runtype", 1, "approve", {"runtype": "sideways"}, ["Invalid action."]),
    ("start before approval", 1, "start", {}, ["Invalid action."]),
    ("unapprove while copying", 3, "unapprove", {}, ["Invalid action."]),
    ("enqueue while copying", 3, "enqueue", {}, ["Invalid action."]),
    ("dequeue when not enqueued", 2, "dequeue", {}, ["Invalid action."]),
    ("rename while copying", 3, "rename", {}, ["Invalid action."]),
    ("rename with a stale lock_version", 4, "rename", {"lock_version": 1}, ["Incorrect lock_version supplied."]),
    ("resume while copying", 3, "resume", {}, ["Invalid action."]),
    ("resume with a stale lock_version", 12, "resume", {"lock_version": 2}, ["Incorrect lock_version supplied."]),
    ("pause awaiting rename", 4, "pause", {}, ["Invalid action."]),
    ("start twice", 3, "start", {}, ["Invalid action."]),
    ("cancel awaiting start", 2, "cancel_cli", {}, ["Invalid action."]),
    ("cancel a completed one", 8, "cancel_cli", {}, ["Invalid action."]),
    ("resume a completed one", 8, "resume", {}, ["Invalid action."]),
    ("resume a failed one", 10, "resume", {}, ["Invalid action."]),
    ("delete while copying", 3, "delete", {}, ["Invalid action."]),
    ("delete with a stale lock_version", 1, "delete", {"lock_version": 0}, ["Incorrect lock_version supplied."]),
]


@pytest.fixture(scope="module")
def server():
    with ShiftApiServer({"primary": ("127.0.0.1", 3306)}) as running:
        yield running


def reach(server: ShiftApiServer, status: int) -> int:
    """A fresh migration moved through legal steps (both sides) to ``status``."""
    mid = server.create(ALTER)["id"]

    def ok(response):
        assert response.status_code == 200, response.text

    if status == 0:
        return mid
    server.machine("unstage", mid)
    server.machine("next_step", mid)
    if status == 1:
        return mid
    ok(server.human("approve", mid))
    if status == 2:
        return mid
    ok(server.human("start", mid))
    if status == 3:
        return mid
    server.machine("unstage", mid)
    if status == 10:
        server.machine("fail", mid, error_message="boom")
        return mid
    if status == 12:
        ok(server.human("pause", mid))
        server.machine("unstage", mid)
        server.machine("next_step", mid)
        return mid
    server.machine("next_step", mid)
    if status == 4:
        return mid
    ok(server.human("rename", mid))
    server.machine("unstage", mid)
    server.machine("complete", mid)
    assert status == 8
    return mid


@pytest.mark.parametrize("name,status,step,params,errors", FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_forbidden_human_transitions_answer_400(server, name, status, step, params, errors):
    mid = reach(server, status)
    before = server.migration(mid)
    assert before["status"] == status
    response = server.human(step, mid, **params)
    assert response.status_code == 400, response.text
    assert sorted(response.json()["errors"]) == sorted(errors)
    after = server.migration(mid)
    assert (after["status"], after["staged"], after["lock_version"]) == (
        before["status"], before["staged"], before["lock_version"]), "a refused step changes nothing"


# Runner calls outside their window answer the migration unchanged (Rails does the same).
MACHINE_NOOPS = [
    ("next_step while still staged", 0, "next_step", {}),
    ("next_step at a human status", 1, "next_step", {}),
    ("next_step awaiting rename", 4, "next_step", {}),
    ("error outside copy", 4, "error", {"error_message": "x"}),
    ("offer outside copy", 4, "offer", {}),
    ("runner cancel before start", 2, "cancel", {}),
    ("unstage when not staged", 1, "unstage", {}),
]


@pytest.mark.parametrize("name,status,step,params", MACHINE_NOOPS, ids=[m[0] for m in MACHINE_NOOPS])
def test_machine_calls_outside_their_window_change_nothing(server, name, status, step, params):
    mid = reach(server, status)
    before = server.migration(mid)
    answer = server.machine(step, mid, **params)
    if step == "unstage":
        assert answer == {}
    else:
        assert answer["id"] == mid and answer["status"] == status
    after = server.migration(mid)
    assert (after["status"], after["staged"], after["lock_version"], after["error_message"]) == (
        before["status"], before["staged"], before["lock_version"], before["error_message"])


def test_legal_side_paths(server):
    # enqueue -> dequeue -> enqueue -> start.
    mid = reach(server, 2)
    for step, expect in (("enqueue", 14), ("dequeue", 2), ("enqueue", 14), ("start", 3)):
        response = server.human(step, mid)
        assert response.status_code == 200, response.text
        assert response.json()["migration"]["status"] == expect
    assert server.migration(mid)["staged"] is True

    # error (13) then resume clears the message and re-stages it.
    mid = reach(server, 3)
    server.machine("unstage", mid)
    assert server.machine("error", mid, error_message="pt-osc exited 18")["status"] == 13
    assert server.migration(mid)["error_message"] == "pt-osc exited 18"
    resumed = server.human("resume", mid).json()["migration"]
    assert (resumed["status"], resumed["staged"], resumed["error_message"]) == (3, True, None)

    # pause: 3 -> 11 staged -> (runner) 12 -> resume -> 3 staged.
    mid = reach(server, 3)
    assert server.human("pause", mid).json()["migration"]["status"] == 11
    server.machine("unstage", mid)
    assert server.machine("next_step", mid)["status"] == 12
    assert server.human("resume", mid).json()["migration"]["status"] == 3

    # offer hands a running copy back: staged again at 3.
    mid = reach(server, 3)
    server.machine("unstage", mid)
    offered = server.machine("offer", mid)
    assert (offered["status"], offered["staged"]) == (3, True)

    # cancel from awaiting rename -> 9 staged, and the runner sees it.
    mid = reach(server, 4)
    canceled = server.human("cancel_cli", mid).json()["migration"]
    assert (canceled["status"], canceled["staged"]) == (9, True)

    # fail is terminal with the message kept.
    mid = reach(server, 1)
    failed = server.machine("fail", mid, error_message="bad final insert")
    assert (failed["status"], failed["error_message"]) == (10, "bad final insert")

    # delete an approved one; it is gone (404).
    mid = reach(server, 1)
    assert server.human("delete", mid).json() == {}
    assert server.request("GET", f"migrations/{mid}").status_code == 404


def test_staged_returns_at_most_two_machine_migrations(server):
    ids = [server.create(ALTER)["id"] for _ in range(3)]
    staged = server.request("GET", "migrations/staged").json()
    assert 1 <= len(staged) <= 2
    assert all(m["staged"] and m["status"] in (0, 3, 5, 9, 11) for m in staged)
    for mid in ids:
        server.machine("unstage", mid)
    assert not {m["id"] for m in server.request("GET", "migrations/staged").json()} & set(ids)


@pytest.mark.parametrize("ddl,table,mode,action", [
    ("CREATE TABLE `appname`.`people` (id INT PRIMARY KEY)", "people", 0, 0),
    ("drop view if exists v_people", "v_people", 1, 1),
    ("CREATE OR REPLACE VIEW v AS SELECT 1", "v", 1, 0),
    ("alter table `weird name` add column x int;", "weird name", 0, 2),
])
def test_ddl_is_parsed_when_staged(server, ddl, table, mode, action):
    migration = server.create(ddl, database="appname")
    listed = {m["id"]: m for m in server.request("GET", "migrations/staged").json()}[migration["id"]]
    assert (listed["table"], listed["mode"], listed["action"]) == (table, mode, action)


@pytest.mark.parametrize("body,error", [
    ({"ddl_statement": "UPDATE t SET a = 1"}, "not a CREATE, DROP or ALTER"),
    ({"ddl_statement": "ALTER TABLE t ADD c INT; DROP TABLE u"}, "single statement"),
    ({"ddl_statement": ""}, "can't be blank"),
    ({"ddl_statement": "ALTER TABLE other.t ADD c INT"}, "names database 'other'"),
    ({"cluster_name": "nowhere"}, "not a known cluster"),
    ({"custom_options": "{not json"}, "valid JSON"),
])
def test_invalid_creation_answers_400(server, body, error):
    request = {"cluster_name": "primary", "database": "db", "ddl_statement": ALTER, **body}
    response = server.request("POST", "migrations", request)
    assert response.status_code == 400
    assert any(error in e for e in response.json()["errors"]), response.json()


def test_form_bodies_are_accepted_too(server):
    mid = server.create(ALTER)["id"]
    response = server.session.post(server.url + "migrations/unstage", data={"id": str(mid)}, timeout=10)
    assert response.status_code == 200 and response.json()["staged"] is False


def test_ui_page_and_missing_migration(server):
    mid = server.create(ALTER)["id"]
    assert server.request("GET", f"migrations/{mid}").json()["migration"]["id"] == mid  # the JSON API is as it was
    server.request("POST", "migrations/append_to_file",
                   {"migration_id": mid, "file_type": 0, "contents": "copy <done> & shipped\n"})
    server.request("PUT", f"migrations/{mid}", {"copy_percentage": "42", "table_rows_start": "1000"})
    page = server.session.get(server.root + f"migrations/{mid}", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert f"<h1>Migration {mid}: <span id=\"status\">preparing (0)</span></h1>" in html
    assert "copy 42%" in html and "about 1,000 (estimate)" in html
    assert "copy &lt;done&gt; &amp; shipped" in html  # the log, escaped
    assert html.count("<pre id=\"ddl\">") == 1
    missing = server.request("GET", "migrations/999999")
    assert missing.status_code == 404 and missing.json()["errors"] == ["Migration not found."]
    assert server.request("GET", "migrations/get_file", params={"migration_id": mid, "file_type": 1}).json() == {
        "message": "File not found"}
    wrong_type = server.request("POST", "migrations/append_to_file",
                                {"migration_id": mid, "file_type": 1, "contents": "x"})
    assert wrong_type.status_code == 400 and "not appendable" in wrong_type.json()["message"]


def test_hook_raises_on_404_and_400(server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SHIFT_API", server.url)
    hook = ShiftApiHook(retry_limit=2, retry_delay=0.05)
    with pytest.raises(ShiftApiError) as info:
        hook.show(424242)
    assert info.value.status_code == 404 and "call show" in str(info.value)
    assert info.value.errors == ["Migration not found."]
    mid = server.create(ALTER)["id"]
    with pytest.raises(ShiftApiError) as info:
        hook.update(mid, table_rows_start="many")
    assert info.value.status_code == 400 and "table_rows_start must be an integer" in str(info.value)


def test_status_codes_match_the_contract():
    assert [s.value for s in Status] == [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14]
