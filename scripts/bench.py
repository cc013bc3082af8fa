"""Benchmark: the copy through the project's CopyOperator against bare pt-osc and MariaDB's own ALTERs.

`make bench` (`make bench ROWS=N`). Starts its own MariaDB and reference shift API,
generates `bench.t` with N rows, and times, `--repeat` times each on the same table:

* bare-ptosc   pt-osc run directly with the argv the operator builds (ptosc.build_command)
* operator     the copy task of `shift_test_copy` through Airflow (dag.test): the span of
               CopyOperator.execute, so every API call, state save, XCom push and log sync
               counts; the task instance's start-to-end (which adds Airflow's own task start,
               dominated by dag.test's in-process API on the first run) is reported beside it
* alter-copy   `ALTER TABLE ... ADD COLUMN ..., ALGORITHM=COPY` (blocking lower bound)
* instant      the same ADD COLUMN with `ALGORITHM=INSTANT`
* checksum     the copy's content checksum (checksum.compare) of bare pt-osc's shadow table
               against the original, right after that copy; reported as `checksum/copy`
               (a ratio to bare-ptosc). A writer updating single rows runs 3 s before it
               (idle baseline) and during it: its p99 latency in both, and their ratio.

* resume       kill -9 of pt-osc (with shift's checkpoint plugin, the argv and environment the
               operator gives it) at ~50% of the copy, then pt-osc resumed from the checkpoint
               it left: `resume/full` is the resumed run's wall time over a full copy with the
               plugin measured in the same repetition (must be <= 0.6), and the rows the resumed
               run copied are printed against the rows remaining + 2 chunks (the bound). The
               plugin's own cost is `full-with-plugin/bare-ptosc`.

plus the claim latency (a migration staged -> unstaged by the sensor DAG and its trigger
polling every 0.2 s) and the operator's peak RSS and CPU seconds per million rows (the
task runs in this process under dag.test; pt-osc's own CPU is reported apart). Prints
medians and the ratios, writes bench-results.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATABASE, TABLE = "bench", "t"
ADD = "ADD COLUMN extra INT NOT NULL DEFAULT 7"
DDL = f"ALTER TABLE {TABLE} {ADD}"


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def isolated_airflow(workdir: Path) -> Path:
    """A private AIRFLOW_HOME whose DAGs folder holds the project's DAGs and the copy test DAG."""
    home = workdir / "airflow"
    dags = home / "dags"
    dags.mkdir(parents=True)
    for source in [*sorted((REPO / "dags").glob("*.py")), REPO / "tests" / "dags" / "copy_test_dags.py"]:
        (dags / source.name).symlink_to(source)
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    })
    subprocess.run([str(REPO / ".venv/bin/airflow"), "db", "migrate"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, env=os.environ.copy())
    return home


def write_settings(workdir: Path, server, pt_osc_path: str) -> Path:
    import yaml

    from tests.support.mariadb import TEST_PASSWORD, TEST_USER

    path = workdir / "settings.yaml"
    path.write_text(yaml.safe_dump({
        # The shipped defaults for everything that shapes the copy (progress, syncs, control polls).
        "mysql_user": TEST_USER, "mysql_password": TEST_PASSWORD, "pt_osc_path": pt_osc_path,
        "log_dir": str(workdir / "shift-logs"), "stop_file_path": str(workdir / "stop"),
        "host_override": server.host, "port_override": server.port, "staged_poll_interval": 0.2,
    }))
    os.environ["SHIFT_CONFIG"] = str(path)
    return path


class Sampler:
    """Samples this process's RSS and CPU times every 50 ms while a step runs."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.samples: list[tuple[float, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            cpu = self.proc.cpu_times()
            self.samples.append((time.time(), self.proc.memory_info().rss, cpu.user + cpu.system))
            self._stop.wait(0.05)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> tuple[int, float]:
        """(peak RSS bytes, CPU seconds) within [start, end] (wall-clock epoch seconds)."""
        inside = [s for s in self.samples if start <= s[0] <= end] or self.samples[-1:]
        before = [s for s in self.samples if s[0] <= start] or self.samples[:1]
        return max(s[1] for s in inside), inside[-1][2] - before[-1][2]


class ExecuteTimer:
    """Records when CopyOperator.execute starts and ends (wall clock), around the real method."""

    spans: list[tuple[float, float]] = []

    @classmethod
    def install(cls) -> None:
        from shift_provider.operators.copy import CopyOperator

        original = CopyOperator.execute
        if getattr(original, "_bench_timed", False):
            return

        def timed(self, context):
            started = time.time()
            try:
                return original(self, context)
            finally:
                cls.spans.append((started, time.time()))

        timed._bench_timed = True  # type: ignore[attr-defined]
        CopyOperator.execute = timed


class Bench:
    def __init__(self, rows: int, repeat: int) -> None:
        self.rows, self.repeat = rows, repeat
        self.results: dict[str, list[float]] = {"bare-ptosc": [], "operator": [], "alter-copy": [], "instant": [],
                                                "checksum": [], "full-with-plugin": [], "resumed": []}
        self.extra: dict[str, list[float]] = {"operator_peak_rss_mb": [], "operator_cpu_s_per_mrows": [],
                                               "ptosc_cpu_s_per_mrows": [], "operator_task_instance_s": [],
                                               "operator_dag_test_s": [],
                                               "claim_latency_s": [], "write_p99_idle_ms": [],
                                               "write_p99_checksum_ms": [], "resume_rows_copied": [],
                                               "resume_rows_bound": [], "resume_killed_at_percent": []}
        # Every write latency of every repetition: the p99s are taken over the pooled samples
        # (a few thousand writes), far steadier than a median of per-run p99s of a few hundred.
        self.write_latencies: dict[str, list[float]] = {"idle": [], "checksum": []}

    # -- setup --------------------------------------------------------------------------------

    def start(self, workdir: Path) -> None:
        from tests.support.mariadb import MariaDBServer
        from tests.support.shift_api import ShiftApiServer

        pt_osc = shutil.which("pt-online-schema-change")
        if not pt_osc:
            raise SystemExit("pt-online-schema-change is not installed; run `make bootstrap`")
        say("starting MariaDB, the reference shift API and an isolated Airflow home")
        self.workdir = workdir
        self.server = MariaDBServer(server_id=1, basedir=workdir / "mariadb",
                                    extra_args=("--innodb-buffer-pool-size=512M",)).start()
        self.api = ShiftApiServer({"bench": (self.server.host, self.server.port)}).start()
        os.environ["AIRFLOW_CONN_SHIFT_API"] = self.api.url
        isolated_airflow(workdir)
        self.settings_path = write_settings(workdir, self.server, pt_osc)

        from tests.support.tables import create_sample_table

        started = time.monotonic()
        create_sample_table(self.server, DATABASE, TABLE, self.rows)
        self.server.execute(f"ANALYZE TABLE {DATABASE}.{TABLE}")
        say(f"generated `{DATABASE}`.`{TABLE}` with {self.rows} rows in {time.monotonic() - started:.1f}s")

    def stop(self) -> None:
        for thing in ("api", "server"):
            obj = getattr(self, thing, None)
            if obj is not None:
                obj.stop() if thing == "api" else obj.destroy()

    # -- helpers ------------------------------------------------------------------------------

    def reset(self) -> None:
        """The table as generated: no pt-osc triggers, no shadow table, no added column."""
        from tests.support.tables import columns_of, tables_in, triggers_on

        for trigger in triggers_on(self.server, DATABASE, TABLE):
            self.server.execute(f"DROP TRIGGER `{DATABASE}`.`{trigger}`")
        for shadow in [t for t in tables_in(self.server, DATABASE) if t.startswith(f"_{TABLE}_new")]:
            self.server.execute(f"DROP TABLE `{DATABASE}`.`{shadow}`")
        if "extra" in columns_of(self.server, DATABASE, TABLE):
            # A rebuild, so no instant-ALTER metadata is left behind for the next run.
            self.server.execute(f"ALTER TABLE `{DATABASE}`.`{TABLE}` DROP COLUMN extra, ALGORITHM=COPY")

    def claimed_migration(self) -> dict:
        """A long ALTER at 3 copy in progress, unstaged: the copy task's conf."""
        created = self.api.create(DDL, database=DATABASE, cluster="bench",
                                  custom_options={"recursion_method": "none"})
        self.api.drive_to_start(created["id"])
        return self.api.claim(created["id"])

    # -- the measurements ---------------------------------------------------------------------

    def bare_ptosc(self) -> float:
        from shift_provider import ptosc
        from shift_provider.hooks.cluster import ShiftClusterHook
        from shift_provider.contract.models import Migration
        from shift_provider.settings import get_settings

        settings = get_settings()
        migration = Migration.from_payload(self.claimed_migration())
        hook = ShiftClusterHook(migration, settings)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with hook.defaults_file() as defaults:
            command = ptosc.build_command(migration, settings, defaults, ptosc.Execution.EXECUTE,
                                          progress_interval=settings.progress_interval)
            self.last_shadow = command.new_table
            started = time.monotonic()
            done = subprocess.run(command.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            elapsed = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"bare pt-osc failed ({done.returncode}): {done.stderr[-2000:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        self.extra["ptosc_cpu_s_per_mrows"].append(cpu / (self.rows / 1e6))
        self.api.machine("next_step", migration.id)  # out of the way: 3 -> 4
        return elapsed

    def ptosc_with_checkpoint(self, migration, workdir: Path, resume: bool, kill_at: int | None = None):
        """pt-osc with the checkpoint plugin as the operator runs it: (seconds, last checkpoint, killed at %)."""
        from shift_provider import ptosc
        from shift_provider.ptosc import checkpoint as ptosc_checkpoint
        from shift_provider.hooks.cluster import ShiftClusterHook
        from shift_provider.ptosc.process import ChildProcess
        from shift_provider.settings import get_settings

        settings = get_settings()
        checkpoint_path = workdir / ptosc_checkpoint.CHECKPOINT_FILE
        resume_path = workdir / ptosc_checkpoint.RESUME_FILE if resume else None
        if resume:
            ptosc_checkpoint.write_resume(resume_path, ptosc_checkpoint.read(checkpoint_path))
        checkpoint_path.unlink(missing_ok=True)
        killed_at = None
        with ShiftClusterHook(migration, settings).defaults_file() as defaults:
            command = ptosc.build_command(migration, settings, defaults, ptosc.Execution.EXECUTE, progress_interval=1,
                                          extra_args=ptosc_checkpoint.plugin_args())
            started = time.monotonic()
            child = ChildProcess(command.argv, env=ptosc_checkpoint.environment(checkpoint_path, resume_path)).start()
            tail: list[str] = []
            for line in child.lines(tick=0.05):
                if line is not None:
                    tail = (tail + [line.text])[-20:]
                if kill_at is not None and killed_at is None:
                    # pt-osc's progress lines come once a second (a quarter of a 1M-row copy here); the
                    # checkpoint, polled every 50 ms, says sooner when half the rows are in: kill -9 then,
                    # while the next chunk is being copied (that chunk is lost: the resume copies it again).
                    reached = ptosc_checkpoint.read(checkpoint_path) or {}
                    percent = 100 * (reached.get("rows_copied") or 0) / max(1, reached.get("row_estimate") or 0)
                    if percent >= kill_at:
                        killed_at = round(percent)
                        child.signal_group(9)  # kill -9: no cleanup, no last checkpoint
            code = child.wait()
            elapsed = time.monotonic() - started
        if kill_at is not None and killed_at is None:
            raise SystemExit(f"the copy ended ({code}) before {kill_at}%: too few rows to measure a resume "
                             "(--rows 1000000)")
        if kill_at is None and code != 0:
            raise SystemExit(f"pt-osc with the checkpoint plugin ended {code}: " + " | ".join(tail))
        return elapsed, ptosc_checkpoint.read(checkpoint_path), killed_at

    def resume_after_kill(self, workdir: Path) -> tuple[float, float]:
        """A full copy with the plugin, then one killed at ~50% and resumed: (full s, resumed s)."""
        from shift_provider.contract.models import Migration

        self.reset()
        full, _, _ = self.ptosc_with_checkpoint(Migration.from_payload(self.claimed_migration()), workdir, False)
        self.reset()
        migration = Migration.from_payload(self.claimed_migration())
        _, killed, killed_at = self.ptosc_with_checkpoint(migration, workdir, False, kill_at=50)
        if not (killed and killed.get("resumable")):
            raise SystemExit(f"the killed copy left no resumable checkpoint: {killed}")
        rows = self.server.query(f"SELECT COUNT(*) FROM `{DATABASE}`.`{TABLE}`")[0][0]
        resumed, done, _ = self.ptosc_with_checkpoint(migration, workdir, True)
        shadow_rows = self.server.query(f"SELECT COUNT(*) FROM `{DATABASE}`.`_{TABLE}_new_{migration.id}`")[0][0]
        if shadow_rows != rows:
            raise SystemExit(f"the resumed copy left {shadow_rows} rows in the shadow table, the table has {rows}")
        remaining = rows - killed["rows_copied"]
        bound = remaining + 2 * max(killed["chunk_size"], done["chunk_size"])
        self.extra["resume_rows_copied"].append(done["rows_this_run"])
        self.extra["resume_rows_bound"].append(bound)
        self.extra["resume_killed_at_percent"].append(killed_at)
        say(f"resume: killed at {killed_at}% after {killed['rows_copied']} rows; the resumed run copied "
            f"{done['rows_this_run']} rows (remaining {remaining} + 2 chunks = {bound})")
        self.api.machine("next_step", migration.id)
        return full, resumed

    def operator(self, sampler: Sampler) -> float:
        from tests.support.airflow import dag_bag

        ExecuteTimer.install()
        conf = self.claimed_migration()
        dag = dag_bag().get_dag("shift_test_copy")
        started = time.monotonic()
        run = dag.test(run_conf=conf)
        wall = time.monotonic() - started
        (ti,) = run.get_task_instances()
        if str(ti.state) != "success":
            raise SystemExit(f"the copy task ended {ti.state}; see the task log above")
        migration = self.api.migration(conf["id"])
        assert migration["status"] == 4, migration
        begin, end = ExecuteTimer.spans[-1]
        peak, cpu = sampler.between(begin, end)
        self.extra["operator_task_instance_s"].append((ti.end_date - ti.start_date).total_seconds())
        self.extra["operator_peak_rss_mb"].append(peak / 2**20)
        self.extra["operator_cpu_s_per_mrows"].append(cpu / (self.rows / 1e6))
        self.extra["operator_dag_test_s"].append(wall)
        return end - begin

    def checksum(self) -> float:
        """The content checksum of the shadow bare pt-osc just left, with a writer's p99 before and during."""
        from shift_provider.engine import checksum
        from shift_provider.hooks.cluster import ShiftClusterHook
        from shift_provider.contract.models import Migration
        from shift_provider.settings import get_settings

        settings = get_settings()
        migration = Migration.from_payload({"id": 1, "database": DATABASE, "table": TABLE, "ddl_statement": DDL,
                                            "status": 3, "host": self.server.host, "port": self.server.port,
                                            "runtype": 1, "mode": 0, "action": 2})
        hook = ShiftClusterHook(migration, settings)
        writer = LatencyWriter(self.server, self.rows).start()
        time.sleep(3)
        idle = writer.mark()
        started = time.monotonic()
        result = checksum.compare(hook, DATABASE, TABLE, self.last_shadow, renamed_columns=(),
                                  max_threads_running=125, chunk_seconds=settings.checksum_chunk_seconds,
                                  progress=lambda percent, eta: None, note=lambda text: None)
        elapsed = time.monotonic() - started
        during = writer.mark()
        writer.stop()
        if result.rows < self.rows or result.chunks_repaired:
            raise SystemExit(f"the checksum of a clean copy found {result}")
        self.extra["write_p99_idle_ms"].append(_p99(idle) * 1000)
        self.extra["write_p99_checksum_ms"].append(_p99(during) * 1000)
        self.write_latencies["idle"] += idle
        self.write_latencies["checksum"] += during
        return elapsed

    def alter(self, algorithm: str) -> float:
        started = time.monotonic()
        self.server.execute(f"ALTER TABLE `{DATABASE}`.`{TABLE}` {ADD}, ALGORITHM={algorithm}")
        return time.monotonic() - started

    def claim_latency(self) -> float:
        """Staged (the API's create answered) -> unstaged, through the sensor DAG and its trigger."""
        from tests.support.airflow import dag_bag

        dag = dag_bag().get_dag("shift_staged_migrations")
        box: dict[str, float] = {}

        def stage_then_watch() -> None:
            time.sleep(4)  # the sensor has poked (nothing staged) and deferred to its trigger
            created = self.api.create(f"ALTER TABLE {TABLE} ADD COLUMN other INT", database=DATABASE,
                                      cluster="bench")
            staged_at = time.monotonic()
            while self.api.migration(created["id"])["staged"]:
                time.sleep(0.005)
            box["latency"] = time.monotonic() - staged_at

        watcher = threading.Thread(target=stage_then_watch, daemon=True)
        watcher.start()
        run = dag.test()
        watcher.join(60)
        if str(run.state) != "success" or "latency" not in box:
            raise SystemExit(f"the sensor DAG run ended {run.state} without claiming the migration")
        return box["latency"]

    def run(self) -> None:
        with Sampler() as sampler:
            for rep in range(1, self.repeat + 1):
                # Alternate which copy goes first, so neither always gets the warmer cache.
                order = ["bare-ptosc", "operator"] if rep % 2 else ["operator", "bare-ptosc"]
                for name in [*order, "alter-copy", "instant"]:
                    self.reset()
                    if name == "bare-ptosc":
                        seconds = self.bare_ptosc()
                        self.results["checksum"].append(self.checksum())
                        say(f"run {rep}/{self.repeat} {'checksum':<10} {self.results['checksum'][-1]:8.3f} s")
                    elif name == "operator":
                        seconds = self.operator(sampler)
                    else:
                        seconds = self.alter("COPY" if name == "alter-copy" else "INSTANT")
                    self.results[name].append(seconds)
                    say(f"run {rep}/{self.repeat} {name:<10} {seconds:8.3f} s")
                full, resumed = self.resume_after_kill(self.workdir)
                self.results["full-with-plugin"].append(full)
                self.results["resumed"].append(resumed)
                say(f"run {rep}/{self.repeat} full copy with the plugin {full:8.3f} s, resumed after kill -9 at ~50% "
                    f"{resumed:8.3f} s")
            self.reset()
            for _ in range(self.repeat):
                self.extra["claim_latency_s"].append(self.claim_latency())
                say(f"claim latency {self.extra['claim_latency_s'][-1]:.3f} s")

    def report(self, json_path: Path) -> dict:
        med = {name: statistics.median(values) for name, values in self.results.items()}
        extra = {name: statistics.median(values) for name, values in self.extra.items() if values}
        extra["write_p99_idle_ms"] = _p99(self.write_latencies["idle"]) * 1000
        extra["write_p99_checksum_ms"] = _p99(self.write_latencies["checksum"]) * 1000
        ratios = {"operator/bare-ptosc": med["operator"] / med["bare-ptosc"],
                  "bare-ptosc/alter-copy": med["bare-ptosc"] / med["alter-copy"],
                  "bare-ptosc/instant": med["bare-ptosc"] / med["instant"],
                  "checksum/copy": med["checksum"] / med["bare-ptosc"],
                  "resume/full": med["resumed"] / med["full-with-plugin"],
                  "full-with-plugin/bare-ptosc": med["full-with-plugin"] / med["bare-ptosc"],
                  "write_p99_checksum/idle": extra["write_p99_checksum_ms"] / max(extra["write_p99_idle_ms"], 1e-6)}
        print()
        print(f"rows: {self.rows}   repetitions: {self.repeat}   (median seconds)")
        for name in ("bare-ptosc", "operator", "alter-copy", "instant", "checksum", "full-with-plugin", "resumed"):
            runs = " ".join(f"{v:.3f}" for v in self.results[name])
            print(f"{name:<12} {med[name]:9.3f}   runs: {runs}")
        print(f"operator task instance start-to-end: {extra['operator_task_instance_s']:.3f} s "
              "(adds Airflow's task start under dag.test)")
        print(f"claim latency (staged -> unstaged, poll 0.2 s): {extra['claim_latency_s']:.3f} s")
        print(f"operator peak RSS (task process): {extra['operator_peak_rss_mb']:.0f} MiB")
        print(f"operator CPU: {extra['operator_cpu_s_per_mrows']:.2f} s per million rows "
              f"(pt-osc itself: {extra['ptosc_cpu_s_per_mrows']:.2f} s per million rows)")
        print(f"operator/bare-ptosc: {ratios['operator/bare-ptosc']:.2f}")
        print(f"bare-ptosc/alter-copy: {ratios['bare-ptosc/alter-copy']:.2f}")
        print(f"bare-ptosc/instant: {ratios['bare-ptosc/instant']:.2f}")
        print(f"checksum/copy: {ratios['checksum/copy']:.2f}")
        print(f"resume/full: {ratios['resume/full']:.2f} (kill -9 at ~50%, then resumed from the checkpoint; "
              "must be <= 0.6)")
        print("resumed run's rows copied vs remaining + 2 chunks: " + ", ".join(
            f"{int(c)} <= {int(b)}" if c <= b else f"{int(c)} > {int(b)} (OVER)"
            for c, b in zip(self.extra["resume_rows_copied"], self.extra["resume_rows_bound"])))
        print(f"full-with-plugin/bare-ptosc: {ratios['full-with-plugin/bare-ptosc']:.2f} (the checkpoint's own cost)")
        print(f"writer p99 latency over {len(self.write_latencies['idle'])} idle and "
              f"{len(self.write_latencies['checksum'])} checksum-time writes: idle {extra['write_p99_idle_ms']:.1f} ms, "
              "during the checksum "
              f"{extra['write_p99_checksum_ms']:.1f} ms (write_p99_checksum/idle: "
              f"{ratios['write_p99_checksum/idle']:.2f})")
        results = {"rows": self.rows, "repeat": self.repeat, "runs": self.results, "median_seconds": med,
                   "ratios": ratios, "extra_runs": self.extra, "extra_median": extra,
                   "ptosc_version": _ptosc_version(), "mariadb_version": self.server.query("SELECT VERSION()")[0][0]}
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {json_path}")
        return results


class LatencyWriter:
    """Single-row UPDATEs (autocommit) in a loop; the latency of each, taken in slices by mark()."""

    def __init__(self, server, rows: int) -> None:
        self.server, self.rows = server, rows
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LatencyWriter:
        self._thread.start()
        return self

    def _run(self) -> None:
        import random

        conn = self.server.connect(autocommit=True)
        rng = random.Random(7)
        try:
            with conn.cursor() as cur:
                while not self._stop.is_set():
                    started = time.monotonic()
                    cur.execute(f"UPDATE `{DATABASE}`.`{TABLE}` SET amount = amount + 1 WHERE id = %s",
                                (rng.randint(1, self.rows),))
                    self.latencies.append(time.monotonic() - started)
                    time.sleep(0.002)
        finally:
            conn.close()

    def mark(self) -> list[float]:
        """The latencies since the last mark."""
        taken, self.latencies = self.latencies, []
        return taken

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _p99(values: list[float]) -> float:
    ordered = sorted(values) or [0.0]
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _ptosc_version() -> str:
    from shift_provider import ptosc

    return ptosc.version(shutil.which("pt-online-schema-change") or "pt-online-schema-change")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=REPO / "bench-results.json")
    args = parser.parse_args(argv)
    if args.rows < 1000 or args.repeat < 1:
        parser.error("--rows must be at least 1000 and --repeat at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="shift-bench-"))
    bench = Bench(args.rows, args.repeat)
    try:
        bench.start(workdir)
        bench.run()
        bench.report(args.json)
    finally:
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
