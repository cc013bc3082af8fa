"""The migration's state document, kept in shift as its state file (file_type 1).

It survives a worker's death, so every step that resumes or cleans up reads it
first: the shadow table and triggers the copy made, and which rename sub-steps
are done. YAML, no secrets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import yaml


@dataclass
class MigrationState:
    migration_id: int
    database: str = ""
    table: str = ""
    new_table: str = ""
    triggers: list[str] = field(default_factory=list)
    ptosc_version: str = ""
    ptosc_args: list[str] = field(default_factory=list)
    # running | verifying (checksum) | succeeded | failed | stopped | killed | lost (worker gone) | instant (nothing to copy)
    copy_status: str = ""
    copy_percentage: int | None = None
    rows_copied: int | None = None
    copy_attempts: int = 0
    old_table: str = ""  # the timestamped name chosen for the original at rename
    retired_to: str = ""  # where the old table went: db.table, or "dropped"
    steps_done: list[str] = field(default_factory=list)  # rename/run_ddl/cancel sub-steps
    instant_ddl: bool | None = None
    instant_definition_before: str = ""  # SHOW CREATE TABLE hash before the instant ALTER (rename)
    checksum: dict = field(default_factory=dict)  # the copy's content checksum: chunks, rows, repairs, seconds
    # The original table's definition when the copy started (table_definition.parts): the rename
    # refuses to swap when the live table has changed since, as the shadow table would lose it.
    original_definition: dict[str, str] = field(default_factory=dict)
    # {shadow table's foreign key: the name asked for}, saved before the swap (foreign_key_names).
    foreign_key_names: dict[str, str] = field(default_factory=dict)
    # pt-osc's last checkpoint (ptosc_checkpoint): the last copied chunk's upper boundary, rows copied,
    # chunk size, plus when the triggers were made and the ALTER; a copy on any worker resumes from it
    # when copy_resume proves it usable. Empty: the next copy starts from the first row.
    checkpoint: dict = field(default_factory=dict)
    updated_at: str = ""

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str | None, migration_id: int) -> MigrationState:
        """Parse a stored state; unknown keys are ignored, a garbled file gives a fresh state."""
        try:
            data: Any = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            data = None
        if not isinstance(data, dict):
            return cls(migration_id=migration_id)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["migration_id"] = migration_id
        try:
            return cls(**known)
        except TypeError:
            return cls(migration_id=migration_id)

    def done(self, step: str) -> bool:
        return step in self.steps_done

    def mark(self, step: str) -> None:
        if step not in self.steps_done:
            self.steps_done.append(step)


def load_state(api, migration_id: int) -> MigrationState:
    """Read the state file from shift (None/404 -> a fresh state)."""
    from shift_provider.contract.codes import FileType

    return MigrationState.from_yaml(api.get_file(migration_id, FileType.STATE), migration_id)


def save_state(api, state: MigrationState) -> None:
    from datetime import datetime, timezone

    state.updated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    api.write_file(state.migration_id, state.to_yaml())
