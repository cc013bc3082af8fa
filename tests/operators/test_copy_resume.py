"""A copy resumes only from a checkpoint it can prove; a stale one (or a pt-osc that cannot checkpoint)
means a clean restart from the first row, and the copy still ends equal to the original."""

from __future__ import annotations

import os
import shutil
import stat

from shift_provider.contract.codes import Status
from tests.operators.test_copy import COPY_DAG, SLOW_COPY, Background, copying, local_log, start_copy
from tests.operators.test_copy import copy_env  # noqa: F401 - fixture
from tests.operators.test_pause_cancel import ROWS, assert_swap_matches
from tests.support.polling import wait_for
from tests.support.airflow import run_dag, task_states, xcoms
from tests.support.tables import BackgroundWriter, create_sample_table, tables_in, triggers_on


def stop_mid_copy(settings, shift_api, database: str, mid: int, conf: dict) -> None:
    """Run the copy until the stop file hands it back at ~30%, then take the stop file away."""
    stopper = Background(lambda: (wait_for(copying(shift_api, mid, above=30)), open(settings.stop_file_path, "w").close()))
    stopper.start()
    run = run_dag(COPY_DAG, conf)
    stopper.join_checked()
    assert xcoms(run)["copy"]["copy_outcome"] == "stopped:stop_file"
    os.remove(settings.stop_file_path)


def restarted_clean(values: dict, log: str, why: str) -> None:
    start = values["copy_resume"]
    assert start["resumed"] is False and why in start["reason"], start
    assert f"not resuming from a checkpoint: {start['reason']}; the copy starts from the first row" in log
    assert "that cannot be resumed from: dropping them and copying again from the start" in log
    # It copied the whole table again.
    assert values["rows_copied_this_run"] >= ROWS * 0.9
    assert values["copy_progress_history"][0] == 0


def test_triggers_dropped_by_hand_make_the_copy_restart_clean(copy_env, shift_api, primary, database):
    create_sample_table(primary, database, "t", ROWS)
    conf = start_copy(shift_api, database, "t")
    mid = conf["id"]
    writer = BackgroundWriter(primary, database, "t").start()
    stop_mid_copy(copy_env, shift_api, database, mid, conf)
    assert shift_api.state(mid).checkpoint["resumable"]
    # A DBA drops one of the copy's triggers: deletes no longer reach the shadow table.
    trigger = [name for name in triggers_on(primary, database, "t") if name.endswith("_del")][0]
    primary.execute(f"DROP TRIGGER `{database}`.`{trigger}`")

    run = run_dag(COPY_DAG, shift_api.claim(mid))
    assert task_states(run) == {"copy": "success"}
    assert shift_api.migration(mid)["status"] == Status.AWAITING_RENAME
    restarted_clean(xcoms(run)["copy"], local_log(copy_env, mid), "not this migration's three")
    assert_swap_matches(primary, database, "t", writer, mid)


def test_table_altered_since_the_checkpoint_makes_the_copy_restart_clean(copy_env, shift_api, primary, database):
    create_sample_table(primary, database, "t", ROWS)
    conf = start_copy(shift_api, database, "t")
    mid = conf["id"]
    writer = BackgroundWriter(primary, database, "t").start()
    stop_mid_copy(copy_env, shift_api, database, mid, conf)
    # Someone changes the original meanwhile: the shadow table (built from the old definition) would lose it.
    primary.execute(f"ALTER TABLE `{database}`.`t` ADD COLUMN note INT NULL DEFAULT 3")

    run = run_dag(COPY_DAG, shift_api.claim(mid))
    assert task_states(run) == {"copy": "success"}
    restarted_clean(xcoms(run)["copy"], local_log(copy_env, mid), "changed since the copy started")
    assert "column `note` was added" in xcoms(run)["copy"]["copy_resume"]["reason"]
    assert_swap_matches(primary, database, "t", writer, mid)
    assert "note" in [r[0] for r in primary.query(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s AND TABLE_NAME='t'", (database,))]


def test_a_pt_osc_that_cannot_checkpoint_copies_from_zero_and_says_so_once(airflow_home, shift_settings, shift_api,
                                                                          primary, database, ptosc, tmp_path):
    # A user's own pt-osc (here: the stock script with one more line, so not the one the plugin knows).
    own = tmp_path / "bin" / "pt-online-schema-change"
    own.parent.mkdir()
    shutil.copy(ptosc[0], own)
    with open(own, "a") as handle:
        handle.write("\n# patched by a user\n")
    own.chmod(own.stat().st_mode | stat.S_IXUSR)
    settings = shift_settings(ptosc_extra_args=SLOW_COPY, pt_osc_path=str(own))
    create_sample_table(primary, database, "t", ROWS)
    conf = start_copy(shift_api, database, "t")
    mid = conf["id"]
    writer = BackgroundWriter(primary, database, "t").start()
    stop_mid_copy(settings, shift_api, database, mid, conf)
    first = local_log(settings, mid)
    assert first.count("this copy keeps no checkpoint: pt_osc_path") == 1
    assert "--plugin" not in first and shift_api.state(mid).checkpoint == {}

    run = run_dag(COPY_DAG, shift_api.claim(mid))
    assert task_states(run) == {"copy": "success"}
    values = xcoms(run)["copy"]
    assert values["copy_resume"] == {"resumed": False, "reason": "no checkpoint was recorded"}
    log = local_log(settings, mid)
    assert log.count("this copy keeps no checkpoint: pt_osc_path") == 2  # once per attempt
    assert "that cannot be resumed from: dropping them and copying again from the start" in log
    assert set(tables_in(primary, database)) == {"t", f"_t_new_{mid}"}
    assert_swap_matches(primary, database, "t", writer, mid)


def test_a_chunk_key_the_checkpoint_cannot_hold_makes_the_copy_restart_clean(copy_env, shift_api, primary, database):
    # Every key holds a comma: NibbleIterator splits a resume boundary on commas, so no checkpoint is resumable.
    primary.execute(f"CREATE TABLE `{database}`.`t` (k VARCHAR(32) NOT NULL PRIMARY KEY, v INT NOT NULL)")
    primary.execute(f"INSERT INTO `{database}`.`t` SELECT CONCAT('k,', LPAD(seq, 6, '0')), seq "
                     f"FROM `{database}`.seq_1_to_{ROWS}")
    primary.execute(f"ANALYZE TABLE `{database}`.`t`")
    conf = start_copy(shift_api, database, "t")
    mid = conf["id"]
    stop_mid_copy(copy_env, shift_api, database, mid, conf)
    checkpoint = shift_api.state(mid).checkpoint
    assert checkpoint["resumable"] is False and "comma" in checkpoint["reason"] and checkpoint["upper"] == []
    assert local_log(copy_env, mid).count("shift checkpoint: no resumable checkpoint: the chunk key holds") == 1

    run = run_dag(COPY_DAG, shift_api.claim(mid))
    assert task_states(run) == {"copy": "success"}
    values = xcoms(run)["copy"]
    restarted_clean(values, local_log(copy_env, mid), "the checkpoint is not resumable (the chunk key holds")
    original = ["k", "v"]
    from tests.support.tables import content_checksum

    assert content_checksum(primary, database, "t", original) == \
        content_checksum(primary, database, f"_t_new_{mid}", original)
