"""Which pt-osc may checkpoint, and what a checkpoint says (no server needed: files only)."""

from __future__ import annotations

import shutil

from shift_provider.ptosc import checkpoint as ptosc_checkpoint
from shift_provider.contract.state_file import MigrationState


def test_only_the_known_stock_script_can_checkpoint(ptosc, tmp_path):
    assert ptosc_checkpoint.cannot_checkpoint(ptosc[0]) is None
    assert ptosc_checkpoint.cannot_checkpoint("pt-online-schema-change") is None  # found on PATH
    own = tmp_path / "pt-online-schema-change"
    shutil.copy(ptosc[0], own)
    with open(own, "a") as handle:
        handle.write("# mine\n")
    assert "is not a pt-online-schema-change the checkpoint plugin knows" in ptosc_checkpoint.cannot_checkpoint(str(own))
    assert "cannot be read" in ptosc_checkpoint.cannot_checkpoint(str(tmp_path / "missing"))
    assert "--plugin of its own" in ptosc_checkpoint.cannot_checkpoint(ptosc[0], ["--plugin=/x.pm"])
    assert ptosc_checkpoint.PLUGIN.is_file()


def test_checkpoint_file_percentage_and_the_state_document(tmp_path):
    path = tmp_path / "checkpoint.json"
    assert ptosc_checkpoint.read(path) is None
    path.write_text("{half")
    assert ptosc_checkpoint.read(path) is None  # never half a file in practice (rename), but never a crash
    data = {"resumable": True, "upper": ["500"], "rows_copied": 500, "row_estimate": 2000, "new_table": "_t_new_1"}
    ptosc_checkpoint.write_resume(path, data)
    assert ptosc_checkpoint.read(path) == data
    assert ptosc_checkpoint.resumable(data) and ptosc_checkpoint.percentage(data) == 25
    assert not ptosc_checkpoint.resumable({"resumable": False, "upper": []})
    assert ptosc_checkpoint.percentage({"rows_copied": 5000, "row_estimate": 2000}) == 99  # an estimate is short
    state = MigrationState(migration_id=1, checkpoint=data)
    assert MigrationState.from_yaml(state.to_yaml(), 1).checkpoint == data
    env = ptosc_checkpoint.environment(path, None)
    assert env[ptosc_checkpoint.ENV_CHECKPOINT] == str(path) and ptosc_checkpoint.ENV_RESUME not in env
