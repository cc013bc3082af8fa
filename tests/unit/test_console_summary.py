"""What the console's Migration view says, from a run's facts and shift's answer (pure data in, pure data out)."""

from __future__ import annotations

from shift_provider.console.summary import RunFacts, ShiftAnswer, current_step, summarize

CONF = {"id": 42, "database": "app", "table": "t", "cluster_name": "one", "requestor": "ann",
        "ddl_statement": "ALTER TABLE t ADD COLUMN c INT NULL"}
PREPARED = {f"prepare.{t}": "success" for t in ("validate_final_insert", "dry_run", "detect_instant_ddl",
                                                 "table_stats", "advance")}


def facts(tasks: dict, xcoms: dict | None = None, conf: dict | None = None) -> RunFacts:
    return RunFacts(dag_id="shift_migration", run_id="mig-42", state="running", conf=conf or CONF,
                    tasks={**PREPARED, **tasks}, xcoms=xcoms or {})


def shift(status: int, **fields) -> ShiftAnswer:
    return ShiftAnswer(migration={"id": 42, "status": status, **fields}, actions=["pause", "cancel"])


def test_a_running_copy_shows_its_percentage_and_eta():
    view = summarize(facts({"await_start": "success", "copy": "running", "run_ddl": None},
                           {"copy": {"copy_percentage": 37.5, "eta_seconds": 81}}),
                     shift(3, copy_percentage=30), "http://shift/migrations/42")
    assert view["status"] == {"code": 3, "name": "copy in progress"}
    assert view["step"] == {"task_id": "copy", "state": "running", "label": "copying rows (pt-osc)"}
    assert view["progress"]["phase"] == "copy" and view["progress"]["percent"] == 37.5
    assert view["progress"]["eta_seconds"] == 81
    assert view["waiting"] is None and view["next_action"] is None
    assert view["migration"]["id"] == 42 and view["migration"]["table"] == "t"
    assert view["links"]["shift"] == "http://shift/migrations/42"
    assert view["available_actions"] == ["pause", "cancel"]


def test_after_the_copy_the_checksum_is_the_progress():
    view = summarize(facts({"copy": "running"}, {"copy": {"copy_percentage": 100, "checksum_percentage": 12}}),
                     shift(3), None)
    assert view["progress"]["phase"] == "checksum" and view["progress"]["percent"] == 12
    assert view["progress"]["copy_percent"] == 100


def test_a_wait_for_the_start_names_the_human_action():
    view = summarize(facts({"await_start": "deferred", "copy": None},
                           {"await_start": {"waiting_for": "a human to move migration 42 from awaiting start (2) "
                                                           "to copy in progress (3)"}}),
                     shift(2), None)
    assert view["step"]["task_id"] == "await_start" and view["step"]["state"] == "deferred"
    assert view["waiting"].startswith("waiting for a human to move migration 42")
    assert view["next_action"] == "a human clicks Start in shift"
    assert view["progress"] is None


def test_without_the_run_saying_why_the_status_says_what_a_human_does():
    view = summarize(facts({"await_rename": "scheduled"}), shift(4), None)
    assert view["waiting"] == "awaiting rename: a human clicks Rename in shift"


def test_pt_osc_waiting_is_said_while_the_copy_runs():
    view = summarize(facts({"copy": "running"}, {"copy": {"copy_percentage": 5, "waiting_reason": "replica lag 3s"}}),
                     shift(3), None)
    assert view["waiting"] == "pt-osc waits: replica lag 3s"


def test_the_progress_falls_back_to_shift_and_shift_errors_are_said():
    view = summarize(facts({"copy": "running"}), ShiftAnswer(error="shift API call show failed"), None)
    assert view["status"] is None and view["shift_error"] == "shift API call show failed"
    assert view["progress"] is None
    view = summarize(facts({"copy": "running"}), shift(3, copy_percentage="64.0"), None)
    assert view["progress"]["percent"] == 64.0 and view["progress"]["eta_seconds"] is None


def test_an_ended_run_has_no_step_and_says_how_it_ended():
    ended = facts({"copy": "skipped", "await_rename": "skipped", "rename": "skipped"},
                  {"copy": {"migration_ended": "migration 42 was canceled in shift; copy cleaned up"}})
    assert current_step(ended) is None
    view = summarize(ended, shift(9), None)
    assert view["ended"].startswith("migration 42 was canceled")


def test_a_long_ddl_is_clipped():
    conf = dict(CONF, ddl_statement="ALTER TABLE t " + "ADD COLUMN c INT, " * 100)
    assert summarize(facts({}, conf=conf), shift(1), None)["migration"]["ddl"].endswith("...")
