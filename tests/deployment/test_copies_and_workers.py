"""Real deployment proof, copies and workers: one copy per cluster while the other cluster copies, and a
copy that survives losing its worker (SIGTERM or kill -9 of worker A's process group) on worker B.

Its own topology (tests/deployment/conftest.py), beside test_celery_topology.py's. The tests that
stop worker A come last and start it again. Every timeout is a liveness bound for a loaded 2-core
machine, never a speed claim.
"""

from __future__ import annotations

import signal
import threading
import time

from tests.support.deployment import Deployment, ptosc_processes, wait_for, worker_of
from tests.support.deployment_steps import (HONOUR_SECONDS, LONG_COPY_ROWS, WORKER_A, WORKER_B, WORKERS, client,
                                            copy_resume_of, file_migration, migration, new_database, prepared,
                                            start_copy_on_worker_a, task_hosts, timed, wait_status)
from tests.support.tables import (BackgroundWriter, columns_of, content_checksum, create_sample_table, tables_in,
                                  triggers_on)

TIMINGS: dict[str, float] = {}


def test_one_copy_at_a_time_per_cluster_while_the_other_cluster_copies_in_parallel(both_workers):
    deployment = both_workers
    one, two = deployment.servers["one"], deployment.servers["two"]
    database = new_database("serial")
    tables_one = ["s1", "s2", "s3", "s4"]
    for table in tables_one:
        create_sample_table(one, database, table, 8000)
    # Long enough to still be copying when cluster one's first copy gets a slot: small tasks hold
    # the executor's slots a few seconds each, so that first copy can start ~10 s after this one.
    create_sample_table(two, database, "p", LONG_COPY_ROWS)
    ids_one = [file_migration(deployment, "one", database, f"ALTER TABLE {t} ADD COLUMN x INT NULL")
               for t in tables_one]
    id_two = file_migration(deployment, "two", database, "ALTER TABLE p ADD COLUMN x INT NULL")
    for mid in [*ids_one, id_two]:
        prepared(deployment, mid)
    for mid in [*ids_one, id_two]:
        client(deployment, "approve", str(mid), "--runtype", "long", "--approver", "dba")

    ports = {one.port: "one", two.port: "two"}
    samples: list[dict] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            at = time.monotonic()
            api = {mid: migration(deployment, mid) for mid in [*ids_one, id_two]}
            procs = {"one": 0, "two": 0}
            for proc in ptosc_processes(database):
                dsn = proc.info["cmdline"][-1]
                port = int(next(part[2:] for part in dsn.split(",") if part.startswith("P=")))
                procs[ports[port]] += 1
            samples.append({
                "t": at,
                "pinned_one": [mid for mid in ids_one if api[mid]["run_host"]],
                "copying_one": [mid for mid in ids_one if api[mid]["status"] == 3 and api[mid]["run_host"]
                                and float(api[mid]["copy_percentage"] or 0) < 100],
                "pinned_two": bool(api[id_two]["run_host"]),
                "ptosc_one": procs["one"], "ptosc_two": procs["two"],
                "hosts": {mid: api[mid]["run_host"] for mid in api if api[mid]["run_host"]},
            })
            stop.wait(max(0.0, 0.5 - (time.monotonic() - at)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.monotonic()
    try:
        for mid in [id_two, *ids_one]:  # started at once
            client(deployment, "start", str(mid))
        for mid in [*ids_one, id_two]:
            wait_status(deployment, mid, {4}, 240)
    finally:
        stop.set()
        sampler.join(timeout=10)
    timed(TIMINGS, "four_serial_copies_and_one_parallel", t)
    assert len(samples) > 20
    assert max(s["ptosc_one"] for s in samples) == 1, [s["ptosc_one"] for s in samples]
    assert max(len(s["pinned_one"]) for s in samples) == 1, [s["pinned_one"] for s in samples]
    assert max(len(s["copying_one"]) for s in samples) <= 1
    # Every copy on cluster one was seen running, one after the other, and cluster two's alongside.
    assert {mid for s in samples for mid in s["pinned_one"]} == set(ids_one)
    assert any(s["ptosc_one"] == 1 and s["ptosc_two"] == 1 for s in samples), "no parallel copy on cluster two seen"
    assert {host for s in samples for host in s["hosts"].values()} <= set(WORKERS)
    for table, mid in zip(tables_one, ids_one):
        assert "x" in columns_of(one, database, f"_{table}_new_{mid}")


def _copy_survives_losing_worker_a(deployment: Deployment, how: str) -> None:
    """Stop worker A (``how``: "sigterm" or "sigkill" of its process group) mid-copy; B finishes the migration."""
    server = deployment.servers["two"]
    database = new_database(how)
    create_sample_table(server, database, "t", LONG_COPY_ROWS)
    original = columns_of(server, database, "t")
    mid = file_migration(deployment, "two", database, f"ALTER TABLE t ADD COLUMN {how}_col INT NULL")
    prepared(deployment, mid)
    writer = BackgroundWriter(server, database, "t", interval=0.01).start()
    try:
        start_copy_on_worker_a(deployment, mid, database, "t")
        # Worker A has synced a checkpoint to shift's state file: that is what worker B resumes from.
        wait_for(lambda: deployment.shift_api.state(mid).checkpoint.get("resumable"), 60,
                 "a checkpoint in shift's state file", interval=0.3)
        worker_a = deployment.components[WORKER_A]
        stopped_at = time.monotonic()
        worker_a.signal_group(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
        wait_for(lambda: not ptosc_processes(database, "t"), HONOUR_SECONDS, f"pt-osc to die with worker A ({how})",
                 interval=0.1)
        timed(TIMINGS, f"{how}_ptosc_gone", stopped_at)

        def handed_back():
            m = migration(deployment, mid)
            if m["status"] == 13:
                return m
            if m["status"] == 3 and (m["staged"] or m["run_host"] == WORKER_B):
                return m
            return None

        back = wait_for(handed_back, 120, "the migration to be offered back or errored", interval=0.2)
        timed(TIMINGS, f"{how}_handed_back", stopped_at)
        wait_for(lambda: not worker_a.group_alive() or worker_a.process.poll() is not None, 60,
                 "worker A to exit")
        if back["status"] == 13:
            client(deployment, "resume", str(mid))
        wait_for(lambda: migration(deployment, mid)["run_host"] == WORKER_B, 90, "worker B to take the copy over")
        assert not ptosc_processes(database, "t") or all(
            worker_of(p, deployment) == WORKER_B for p in ptosc_processes(database, "t"))
        wait_status(deployment, mid, {4}, 180)
        timed(TIMINGS, f"{how}_recopied_on_b", stopped_at)
    finally:
        writer.stop()
    control = content_checksum(server, database, "t", original)
    client(deployment, "rename", str(mid))
    wait_status(deployment, mid, {8}, 90)
    assert f"{how}_col" in columns_of(server, database, "t")
    assert content_checksum(server, database, "t", original) == control
    assert writer.operations > 100 and writer.missing_rows() == set()
    assert triggers_on(server, database) == [] and tables_in(server, database) == ["t"]
    copies = task_hosts(deployment, mid, "copy", "copy")
    assert copies[0][1] == WORKER_A and copies[0][0] in ("failed", "up_for_retry", "success"), copies
    assert copies[-1] == ("success", WORKER_B), copies
    # Worker B resumed from worker A's checkpoint instead of copying from the first row.
    run_id = deployment.migration_runs(mid, "copy")[-1]["dag_run_id"]
    start = copy_resume_of(deployment, run_id, "copy")
    assert start and start["resumed"] is True and start["rows_copied_before"] > 0 and start["boundary"], start
    log = deployment.shift_api.log_file(mid)
    assert f"resuming the copy after boundary {start['boundary']}" in log
    assert "that cannot be resumed from" not in log


def test_warm_shutdown_of_worker_a_hands_the_copy_to_worker_b(both_workers):
    _copy_survives_losing_worker_a(both_workers, "sigterm")


def test_kill_9_of_worker_a_hands_the_copy_to_worker_b(both_workers):
    _copy_survives_losing_worker_a(both_workers, "sigkill")
