"""SIGKILL of the copy, cancel and rename steps at random points; after each, the live table is healthy
and a retry finishes the migration (issue 15).

A kill point is the n-th request the step sends to shift (held by the fault proxy, so
the step is frozen right there) plus a short random delay (pt-osc and any statement in
flight go on meanwhile), then a SIGKILL of the task's process group: no ``on_kill``, no
``finally``, as a lost worker. The retry is the same step run again with the same conf,
as Airflow runs it after a clear; it may be killed in turn, so a migration walks through
its step kill after kill until one attempt finishes it. ``n`` and the delay come from a
seeded ``random.Random``: the seed is printed, and ``SHIFT_KILL_SEED=<seed>`` replays a run.

A step is a ``shift_migration`` run of the claimed conf in step mode (the human waits
marked done): the copy task acts at 3, the rename at 5, and a cancel claimed at 9 is
cleaned up by the copy task (the run's task that finishes a cancel of a pt-osc ALTER).

After every kill:
* the application writes to the table (INSERT, UPDATE, DELETE) as before;
* a pt-osc trigger on the live table only writes into this migration's existing shadow
  table, while the step that will use or remove it is still due (copy: 3, cancel: 9,
  rename: 5 and not swapped yet);
* no pt-osc process of the killed step is left.
At the end of each phase the content checksum equals the original's and no trigger is left.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from shift_provider import ptosc
from shift_provider.contract.codes import Status
from tests.support.airflow import run_dag, task_states
from tests.support.e2e import WAITS
from tests.support.faults import FaultProxy, StepForker, ptosc_processes
from tests.support.polling import wait_for
from tests.support.tables import columns_of, content_checksum, create_sample_table, q, tables_in, triggers_on

SEED = int(os.environ.get("SHIFT_KILL_SEED") or random.SystemRandom().randrange(2**31))
DDL = "ALTER TABLE t ADD COLUMN extra INT NOT NULL DEFAULT 7, ADD INDEX iextra (extra)"
ROWS = 2000
KILLS = {"copy": 8, "rename": 8, "cancel": 5}  # 21 kill points in all
PER_MIGRATION = 4  # kills of one step on one migration; more migrations until each step had its kills
# Where a trigger may stay: its step (or the next, once the copy has finished) will use or remove it.
DUE = {"copy": {Status.COPY_IN_PROGRESS, Status.AWAITING_RENAME}, "cancel": {Status.CANCELED},
       "rename": {Status.RENAME_IN_PROGRESS}}


@pytest.fixture
def kill_env(airflow_home, shift_settings, shift_api, ptosc, primary, database, monkeypatch, tmp_path):
    pending = database + "_pd"
    shift_settings(pt_osc_path=ptosc[0], pending_drops_db=pending,
                   ptosc_extra_args=["--chunk-size=250", "--chunk-time=0", "--sleep=0.02"])
    proxy = FaultProxy(shift_api.root).start()  # the step reaches shift only through it; the test goes direct
    monkeypatch.setenv("AIRFLOW_CONN_SHIFT_API", proxy.url)
    forker = StepForker(tmp_path / "forker")
    yield proxy, pending, forker
    forker.stop()
    proxy.stop()
    primary.execute(f"DROP DATABASE IF EXISTS {q(pending)}")


class Walk:
    """Migrations walked through their steps with kills; records each kill point."""

    def __init__(self, api, proxy, primary, database: str, forker: StepForker, rng: random.Random) -> None:
        self.api, self.proxy, self.primary, self.database = api, proxy, primary, database
        self.forker, self.rng = forker, rng
        self.kills: list[str] = []
        # How many requests an attempt of each step sends to shift: a first guess, then the most an
        # attempt that finished showed. A kill lands at a request drawn from 1 to that.
        self.reach = {"copy": 8, "rename": 8, "cancel": 3}

    def new_migration(self) -> int:
        mid = self.api.create(DDL, database=self.database, custom_options={"recursion_method": "none"})["id"]
        self.api.drive_to_start(mid)
        return mid

    def attempt(self, step: str, conf: dict) -> bool:
        """One forked run of the step, killed at a random point; False when it finished first."""
        n, delay = self.rng.randint(1, self.reach[step]), round(self.rng.uniform(0, 0.3), 2)
        started = time.monotonic()
        sent_before = self.proxy.forwarded
        self.proxy.hold_nth(n)
        run = self.forker.start("shift_migration", conf, WAITS)
        try:
            wait_for(lambda: self.proxy.held.is_set() or not run.alive(), 120, f"{step} to reach request {n}")
            if self.proxy.held.is_set():
                time.sleep(delay)  # the step is frozen at its request; pt-osc and statements in flight go on
        finally:
            held = self.proxy.held.is_set()
            run.kill()
            self.proxy.release()
        if not held:
            assert run.returncode == 0, run.log_path.read_text()[-3000:]
            self.reach[step] = max(self.reach[step], self.proxy.forwarded - sent_before)
            print(f"{step} of migration {conf['id']}: finished before request {n} "
                  f"({time.monotonic() - started:.1f}s, {self.proxy.forwarded - sent_before} requests)")
            return False
        self.kills.append(f"{step} of migration {conf['id']} at request {n} + {delay}s "
                          f"({time.monotonic() - started:.1f}s)")
        self.check_healthy(step, conf["id"])
        return True

    def walk(self, step: str, conf: dict, kills: int) -> int:
        """Kill the step up to ``kills`` times, each retry killed in turn; then a retry runs to the end.

        Returns the kills made (fewer when an attempt finished first: that was the retry that finished).
        """
        made = 0
        while made < kills and self.attempt(step, conf):
            made += 1
        if made == kills:
            run = run_dag("shift_migration", conf, mark_success_pattern=WAITS)  # the retry, as after a clear
            assert "failed" not in task_states(run).values(), task_states(run)
        return made

    def check_healthy(self, step: str, mid: int) -> None:
        db, shadow = self.database, ptosc.shadow_table_name("t", mid)
        where = f"after the kill of {self.kills[-1]} (seed {SEED})"
        table = f"{q(db)}.t"
        self.primary.execute(f"INSERT INTO {table} (id, name, amount, created) VALUES (999999, 'app', 1, NOW())",
                             f"UPDATE {table} SET amount = 2 WHERE id = 999999",
                             f"DELETE FROM {table} WHERE id = 999999")
        triggers = triggers_on(self.primary, db, "t")
        if triggers:
            assert all(t.startswith(ptosc.TRIGGER_PREFIX) for t in triggers), (triggers, where)
            assert shadow in tables_in(self.primary, db), f"triggers {triggers} write into a missing table {where}"
            assert self.api.migration(mid)["status"] in DUE[step], where
            if step == "rename":
                assert "extra" not in columns_of(self.primary, db, "t"), f"swapped with triggers left {where}"
        wait_for(lambda: not [p for p in ptosc_processes() if f"D={db}," in " ".join(p.cmdline())], 10,
                 f"no pt-osc left {where}")


def test_kills_at_random_points_of_copy_cancel_and_rename_leave_the_table_healthy_and_a_retry_finishes(
        kill_env, shift_api, primary, database):
    print(f"kill points seed: {SEED} (SHIFT_KILL_SEED={SEED} replays it)")
    proxy, pending, forker = kill_env
    walk = Walk(shift_api, proxy, primary, database, forker, random.Random(SEED))
    create_sample_table(primary, database, "t", ROWS)
    original_columns = columns_of(primary, database, "t")
    original = content_checksum(primary, database, "t")
    made = {"copy": 0, "rename": 0, "cancel": 0}

    def quota(step: str) -> int:
        return min(PER_MIGRATION, KILLS[step] - made[step])

    # Copy, then rename, each killed again and again; a new migration until each step had its kills.
    while quota("copy") > 0 or quota("rename") > 0:
        mid = walk.new_migration()
        made["copy"] += walk.walk("copy", shift_api.claim(mid), max(0, quota("copy")))
        assert shift_api.migration(mid)["status"] == Status.AWAITING_RENAME, shift_api.migration(mid)
        assert shift_api.human("rename", mid).status_code == 200
        made["rename"] += walk.walk("rename", shift_api.claim(mid), max(0, quota("rename")))
        assert shift_api.migration(mid)["status"] == Status.COMPLETED, shift_api.migration(mid)
        # The altered table holds the original rows; nothing of the copy is left on it.
        assert content_checksum(primary, database, "t", original_columns) == original
        assert columns_of(primary, database, "t") == [*original_columns, "extra"]
        assert triggers_on(primary, database) == [] and tables_in(primary, database) == ["t"]
        primary.execute(f"ALTER TABLE {q(database)}.t DROP COLUMN extra, DROP INDEX iextra")  # for the next one

    # Cancel: a finished copy, canceled, the cleanup killed again and again.
    while quota("cancel") > 0:
        mid = walk.new_migration()
        run = run_dag("shift_migration", shift_api.claim(mid), mark_success_pattern=WAITS)
        assert task_states(run)["copy"] == "success"
        assert shift_api.human("cancel", mid).status_code == 200
        made["cancel"] += walk.walk("cancel", shift_api.claim(mid), quota("cancel"))
        assert shift_api.migration(mid)["status"] == Status.CANCELED
        assert triggers_on(primary, database) == [] and tables_in(primary, database) == ["t"]
        assert content_checksum(primary, database, "t") == original
        shadow = ptosc.shadow_table_name("t", mid)
        assert [name for name in tables_in(primary, pending) if name.endswith("_" + shadow)], "shadow not retired"

    print("kill points:\n  " + "\n  ".join(walk.kills))
    assert len(walk.kills) >= 20
