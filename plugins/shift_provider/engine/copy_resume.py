"""Whether a stopped copy may resume from its checkpoint: the proof, read from the live server.

Resuming is only correct when every row up to the checkpoint's boundary is in the shadow
table and has stayed equal to the original since: that holds while this migration's three
triggers have been on the table without a gap and the original's definition is the one the
shadow was built from. So the copy resumes only when the state document's checkpoint names
this migration's shadow table, the table carries exactly this migration's three triggers
writing into it (created when the checkpoint says: not dropped and made again meanwhile),
the original's definition and the ALTER are unchanged, and the pt-osc to run can resume.
Anything else: the copy cleans up and starts from zero, saying which of these failed.
"""

from __future__ import annotations

from typing import Any

from shift_provider import ptosc
from shift_provider.contract.models import Migration
from shift_provider.contract.state_file import MigrationState
from shift_provider.engine import leftovers
from shift_provider.mysql import schema_ops, table_definition
from shift_provider.ptosc import checkpoint as ptosc_checkpoint


def trigger_created(hook, database: str, table: str) -> dict[str, str]:
    """{trigger name: its creation time} for the pt-osc triggers on the table (MariaDB keeps CREATED)."""
    names = ptosc.trigger_names(database, table)
    rows = hook.get_records("SELECT TRIGGER_NAME, CREATED FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
                            "AND EVENT_OBJECT_TABLE = %s", parameters=(database, table))
    return {name: str(created) for name, created in rows if name in names}


def refusal(hook, migration: Migration, state: MigrationState, cannot_checkpoint: str | None) -> str | None:
    """Why the recorded checkpoint cannot be resumed from, or None when it can (every proof holds)."""
    m = migration
    checkpoint: dict[str, Any] = state.checkpoint or {}
    if not checkpoint:
        return "no checkpoint was recorded"
    if not ptosc_checkpoint.resumable(checkpoint):
        return f"the checkpoint is not resumable ({checkpoint.get('reason') or 'no boundary'})"
    if cannot_checkpoint:
        return f"this pt-osc cannot resume: {cannot_checkpoint}"
    shadow = ptosc.shadow_table_name(m.table, m.id)
    if checkpoint.get("new_table") != shadow:
        return f"the checkpoint names shadow table {checkpoint.get('new_table')!r}, not this migration's `{shadow}`"
    if not schema_ops.table_exists(hook, m.database, shadow):
        return f"the shadow table `{shadow}` is gone"
    expected = sorted(ptosc.trigger_names(m.database, m.table))
    present = sorted(schema_ops.triggers_on(hook, m.database, m.table))
    if present != expected:
        return f"the table's triggers are {present}, not this migration's three {expected}"
    writing = {x.name for x in leftovers.find(hook, m.database, m.table)
               if x.kind == "trigger" and x.shadow == shadow and x.owner == m.id}
    if sorted(writing) != expected:
        return f"not every trigger writes into `{shadow}` (only {sorted(writing)} do)"
    recorded = checkpoint.get("triggers_created") or {}
    now = trigger_created(hook, m.database, m.table)
    if recorded and recorded != now:
        return (f"the triggers were made again since the checkpoint (created {now}, recorded {recorded}): "
                "writes in between may have missed the shadow table")
    if not recorded:
        return "the checkpoint does not record when the triggers were created"
    if not state.original_definition:
        return "the original's definition at the copy's start was not recorded"
    changes = table_definition.differences(state.original_definition,
                                           table_definition.fingerprint(hook, m.database, m.table))
    if changes:
        return f"`{m.database}`.`{m.table}` changed since the copy started: " + "; ".join(changes)
    if checkpoint.get("alter") != ptosc.alter_clause(m):
        return "the checkpoint was taken for another ALTER"
    return None
