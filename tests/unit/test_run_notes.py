"""The last line of a migration run's note: how the run ended."""

from shift_provider.run_notes import outcome


def test_the_final_note_says_completed_canceled_or_failed():
    done = {"copy": "success", "run_ddl": "skipped", "rename": "success"}
    assert outcome(done, []) == "**completed**"
    assert outcome({"run_ddl": "success", "copy": "skipped"}, ["migration 3 completed by run_ddl"]) == "**completed**"
    canceled = {"copy": "skipped", "await_rename": "skipped", "rename": "skipped"}
    assert outcome(canceled, ["migration 3 was canceled in shift; the copy task stopped pt-osc"]).startswith(
        "**canceled**")
    assert outcome({"copy": "failed", "await_rename": "upstream_failed"}, []).startswith("**failed** (copy)")
