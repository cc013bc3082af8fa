"""The last line of a migration run's note: how the run ended."""

from shift_provider.run_notes import outcome, with_approver


def test_the_final_note_says_completed_canceled_or_failed():
    done = {"copy": "success", "run_ddl": "skipped", "rename": "success"}
    assert outcome(done, []) == "**completed**"
    assert outcome({"run_ddl": "success", "copy": "skipped"}, ["migration 3 completed by run_ddl"]) == "**completed**"
    canceled = {"copy": "skipped", "await_rename": "skipped", "rename": "skipped"}
    assert outcome(canceled, ["migration 3 was canceled in shift; the copy task stopped pt-osc"]).startswith(
        "**canceled**")
    assert outcome({"copy": "failed", "await_rename": "upstream_failed"}, []).startswith("**failed** (copy)")


def test_the_final_note_names_the_approver_a_later_claim_recorded():
    note = "**one** `db.t`  \nrequested by ann, approved by (not yet)  \n[shift migration 3](x)"
    claims = [{"lock_version": 2, "status": 1}, {"lock_version": 4, "status": 3, "approved_by": "bob"},
              {"lock_version": 3, "status": 3, "approved_by": "carl"}]
    assert with_approver(note, claims) == note.replace("approved by (not yet)", "approved by bob")
    assert with_approver(note, [{"lock_version": 2}]) == note  # nobody approved yet: unchanged
    approved = note.replace("(not yet)", "dan")
    assert with_approver(approved, claims) == approved  # the claim-time note already named the approver
