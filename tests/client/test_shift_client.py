"""shift-client (the real console script, as a subprocess) against the real reference server."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.support.shift_api import CLIENT, SERVER, ShiftApiServer, shift_client

ALTER = "ALTER TABLE t ADD COLUMN c INT"


@pytest.fixture(scope="module")
def server():
    with ShiftApiServer({"primary": ("127.0.0.1", 3306)}) as running:
        yield running


def ok(server, *args: str) -> dict:
    result = shift_client(*args, url=server.url)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


@pytest.mark.parametrize("binary", [SERVER, CLIENT])
def test_console_scripts_have_help(binary):
    result = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "usage:" in result.stdout
    assert ("--cluster" in result.stdout) if binary == SERVER else ("approve" in result.stdout)


def test_create_and_get_print_the_migration(server):
    created = ok(server, "create", "--cluster", "primary", "--database", "app", "--ddl", ALTER,
                 "--final-insert", "INSERT INTO app.log VALUES (1)", "--pr-url", "https://example.invalid/1",
                 "--requestor", "bob", "--custom-options", '{"max_replication_lag": "3"}')
    assert (created["status"], created["requestor"], created["final_insert"]) == (
        0, "bob", "INSERT INTO app.log VALUES (1)")
    assert json.loads(created["custom_options"]) == {"max_replication_lag": "3"}
    assert ok(server, "get", str(created["id"])) == server.migration(created["id"])


def test_verbs_read_lock_version_when_not_given(server):
    mid = server.create(ALTER)["id"]
    server.machine("unstage", mid)
    server.machine("next_step", mid)
    approved = ok(server, "approve", str(mid), "--runtype", "nocheckalter", "--approver", "carol")
    assert (approved["status"], approved["runtype"], approved["approved_by"]) == (2, 4, "carol")
    assert ok(server, "unapprove", str(mid))["status"] == 1
    ok(server, "approve", str(mid))
    assert ok(server, "enqueue", str(mid))["status"] == 14
    assert ok(server, "dequeue", str(mid))["status"] == 2
    started = ok(server, "start", str(mid), "--auto-run")
    assert (started["status"], started["staged"], started["auto_run"]) == (3, True, True)
    assert ok(server, "pause", str(mid))["status"] == 11
    server.machine("unstage", mid)
    server.machine("next_step", mid)
    assert ok(server, "resume", str(mid))["status"] == 3
    assert ok(server, "cancel", str(mid))["status"] == 9


def test_explicit_stale_lock_version_is_refused(server):
    mid = server.create(ALTER)["id"]
    server.machine("unstage", mid)
    server.machine("next_step", mid)
    current = server.migration(mid)["lock_version"]
    stale = shift_client("approve", str(mid), "--lock-version", str(current - 1), url=server.url)
    assert stale.returncode == 1 and stale.stdout == ""
    assert stale.stderr.strip() == (
        "shift-client: POST migrations/approve failed (400): Incorrect lock_version supplied.")
    assert ok(server, "approve", str(mid), "--lock-version", str(current))["status"] == 2


def test_delete_then_get_is_not_found(server):
    mid = server.create(ALTER)["id"]
    assert ok(server, "delete", str(mid)) == {}
    gone = shift_client("get", str(mid), url=server.url)
    assert gone.returncode == 1 and "(404): Migration not found." in gone.stderr


def test_refusals_and_unreachable_api_are_reported_plainly(server):
    mid = server.create(ALTER)["id"]
    result = shift_client("start", str(mid), url=server.url)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == "shift-client: POST migrations/start failed (400): Invalid action."
    bad = shift_client("create", "--cluster", "primary", "--database", "db", "--ddl", "SELECT 1", url=server.url)
    assert bad.returncode == 1 and "not a CREATE, DROP or ALTER" in bad.stderr
    unreachable = shift_client("get", "1", url="http://127.0.0.1:1/api/v1/")
    assert unreachable.returncode == 2 and "cannot reach the shift API" in unreachable.stderr


def test_options_work_after_the_verb_too(server):
    mid = server.create(ALTER)["id"]
    result = subprocess.run([str(CLIENT), "get", str(mid), "--url", server.url], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0 and json.loads(result.stdout)["id"] == mid
