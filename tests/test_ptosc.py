"""pt-osc knowledge (argv, output parsing, exit codes), the child process group, the log shipper.

Real processes throughout: a python child stands in for pt-osc where only the
streaming matters (200 MB of output, a process-group kill, a parent's death).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from shift_provider import ptosc
from shift_provider.ptosc.log_shipper import LogShipper
from shift_provider.contract.models import Migration
from shift_provider.ptosc.process import ChildProcess
from shift_provider.settings import Settings

PASSWORD = "n0t-In-Argv"


def migration(**changes) -> Migration:
    payload = {"id": 7, "database": "app", "table": "orders", "ddl_statement": "ALTER TABLE orders ADD COLUMN c INT",
               "status": 3, "host": "db1.example", "port": 3306, "runtype": 1, "mode": 0, "action": 2,
               "custom_options": '{"max_threads_running": "150", "max_replication_lag": "2"}'}
    payload.update(changes)
    return Migration.from_payload(payload)


# -- argv --------------------------------------------------------------------------------

def test_execute_command_stops_before_the_swap_with_credentials_only_in_the_defaults_file(tmp_path):
    settings = Settings(mysql_password=PASSWORD, pt_osc_path="/usr/bin/pt-online-schema-change",
                        ptosc_extra_args=["--chunk-size=500"])
    defaults = tmp_path / "client.cnf"
    command = ptosc.build_command(migration(), settings, defaults, ptosc.Execution.EXECUTE, progress_interval=3)
    argv = command.argv
    assert argv[0] == settings.pt_osc_path and argv[1] == f"--defaults-file={defaults}"
    for flag in ("--execute", "--no-swap-tables", "--no-drop-new-table", "--no-drop-triggers",
                 "--new-table-name=_orders_new_7", "--progress=time,3", "--max-load=Threads_running=125",
                 "--critical-load=Threads_running=200",
                 "--max-lag=2", "--chunk-size=500"):
        assert flag in argv
    assert argv[argv.index("--alter") + 1] == "ADD COLUMN c INT"
    assert argv[-1] == f"F={defaults},h=db1.example,P=3306,D=app,t=orders"
    assert command.new_table == "_orders_new_7"
    assert not any(PASSWORD in arg for arg in argv)
    dry = ptosc.build_command(migration(), settings, defaults, ptosc.Execution.DRY_RUN).argv
    assert "--dry-run" in dry and "--execute" not in dry and "--no-swap-tables" not in dry


@pytest.mark.parametrize("option, max_load, critical", [
    ("1", 1, 2), ("50", 50, 80), ("100", 100, 160), ("125", 125, 200), ("150", 125, 200), ("200", 125, 200),
    ("300", 125, 300), ("1000000", 125, 1000000),
])
def test_max_load_is_always_below_critical_load(tmp_path, option, max_load, critical):
    """The copy pauses before it aborts, whatever max_threads_running says (default 200: the Go runner's flags)."""
    limits = ptosc.load_limits(int(option))
    assert (limits.max_load, limits.critical_load) == (max_load, critical)
    assert limits.max_load < limits.critical_load
    command = ptosc.build_command(migration(custom_options=f'{{"max_threads_running": "{option}"}}'), Settings(),
                                  tmp_path / "client.cnf", ptosc.Execution.EXECUTE)
    assert ptosc.received_limits(command.argv) == {"max-load": f"Threads_running={max_load}",
                                                   "critical-load": f"Threads_running={critical}",
                                                   "max-lag": "1"}


def test_received_limits_read_the_config_file_then_the_command_line(tmp_path):
    config = tmp_path / "pt.cnf"
    config.write_text("max-lag=5\ncritical-load=Threads_running=400\n")
    argv = ["pt-online-schema-change", f"--config={config}", "--alter", "ADD c INT", "--max-lag=3", "D=a,t=b"]
    assert ptosc.received_limits(argv) == {"max-lag": "3", "critical-load": "Threads_running=400"}


# -- output --------------------------------------------------------------------------------

@pytest.mark.parametrize("line, percent, eta", [
    ("Copying `app`.`orders`:   7% 00:12 remain", 7, 12),
    ("Copying `app`.`orders`:  45% 01:02:03 remain", 45, 3723),
    ("Copying `a``b`.`orders`:  99% 1+02:00:00 remain", 99, 93600),
])
def test_progress_lines_give_percent_and_eta_seconds(line, percent, eta):
    event = ptosc.parse_line(line + "\n")
    assert (event.kind, event.percent, event.eta_seconds) == (ptosc.EventKind.PROGRESS, percent, eta)


@pytest.mark.parametrize("line", [
    "Replica lag is 12 seconds on h=127.0.0.1,P=3307.  Waiting.",
    "Pausing because Threads_running=130.",
    "Waiting forever for new table `app`.`_orders_new` to replicate to h=127.0.0.1,P=3307...",
])
def test_waiting_lines_are_recognised(line):
    assert ptosc.parse_line(line).kind == ptosc.EventKind.WAITING


def test_failure_is_reported_in_the_tools_own_words():
    tail = ["Copying `app`.`orders`:  10% 00:10 remain",
            "The new table `app`.`_orders_new` does not have a PRIMARY KEY or a unique index."]
    message = ptosc.failure_message(4, tail)
    assert message.startswith("pt-online-schema-change exited 4 (the table has no PRIMARY or UNIQUE key)")
    assert "does not have a PRIMARY KEY" in message and "Copying" not in message
    assert ptosc.is_clean_stderr_end(tail[0]) and not ptosc.is_clean_stderr_end(tail[1])
    assert ptosc.is_clean_stderr_end(None)
    assert ptosc.failure_message(-9, []) == "pt-online-schema-change exited -9 (killed by SIGKILL)"


def test_failure_reason_is_the_tools_reason_line_not_its_last_lines():
    """pt-osc 3.2.1's real output for a copy that hit warning 1364: the reason, then its cleanup chatter."""
    output = ["Created triggers OK.", "Copying rows caused a MySQL error 1364:", "    Level: Warning",
              "     Code: 1364", "  Message: Field 'region' doesn't have a default value",
              "    Query: INSERT LOW_PRIORITY IGNORE INTO `d`.`_t_new` (`id`) SELECT `id` FROM `d`.`t`",
              "Not dropping triggers because --no-drop-triggers was specified.  To drop the triggers, execute:",
              "DROP TRIGGER IF EXISTS `d`.`pt_osc_d_t_del`",
              "Not dropping the new table `d`.`_t_new` because --no-drop-new-table was specified.  To drop the "
              "new table, execute:", "DROP TABLE IF EXISTS `d`.`_t_new`;", "`d`.`t` was not altered."]
    failure = ptosc.diagnose(255, output)
    assert failure.reasons == ["Copying rows caused a MySQL error 1364:",
                               "Message: Field 'region' doesn't have a default value"]
    assert not failure.transient
    assert ptosc.copy_warning(output[1]) == 1364 and ptosc.copy_warning(output[0]) is None
    # A Perl die exits with an errno (11, 29 ...), not pt-osc's code 11 "error altering the new table".
    died = ptosc.diagnose(29, ["Error copying rows: DBD::mysql::st execute failed: Lost connection to MySQL "
                               "server during query at /usr/bin/pt-online-schema-change line 11360."])
    assert died.transient and "errno" in died.meaning and died.reasons[0].endswith("during query")
    assert ptosc.diagnose(18, []).transient
    assert ptosc.annotated("Successfully altered `d`.`t`.").endswith("not swapped yet: the rename step does that]")
    assert ptosc.annotated("Copied rows OK.") == "Copied rows OK."


def test_nocheckalter_is_honoured_by_the_dry_run_and_unique_keys_are_checked_by_the_runner(tmp_path):
    settings = Settings(pt_osc_path="/usr/bin/pt-online-schema-change")

    def argv(runtype, mode):
        return ptosc.build_command(migration(runtype=runtype), settings, tmp_path / "c.cnf", mode).argv

    assert "--nocheck-alter" in argv(4, ptosc.Execution.DRY_RUN) and "--nocheck-alter" in argv(4, ptosc.Execution.EXECUTE)
    assert "--nocheck-alter" in argv(5, ptosc.Execution.DRY_RUN)  # "maybe nocheckalter": prepare tries it that way
    assert "--nocheck-alter" not in argv(5, ptosc.Execution.EXECUTE) and "--nocheck-alter" not in argv(1, ptosc.Execution.DRY_RUN)
    assert "--no-check-unique-key-change" in argv(1, ptosc.Execution.EXECUTE)


# -- the child process group ---------------------------------------------------------------------

def test_child_output_streams_line_by_line_from_both_pipes():
    script = ("import sys\nfor i in range(3):\n"
              "    print('out', i, flush=True)\n    print('err', i, file=sys.stderr, flush=True)\n")
    child = ChildProcess([sys.executable, "-c", script]).start()
    lines = [line for line in child.lines(tick=0.05) if line is not None]
    assert child.wait() == 0
    assert [line.text for line in lines if line.stream == "stdout"] == ["out 0", "out 1", "out 2"]
    assert [line.text for line in lines if line.stream == "stderr"] == ["err 0", "err 1", "err 2"]


def test_stop_kills_the_whole_process_group_even_when_term_is_ignored():
    script = textwrap.dedent("""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        grandchild = subprocess.Popen(["sleep", "300"])
        print(grandchild.pid, flush=True)
        time.sleep(300)
    """)
    child = ChildProcess([sys.executable, "-c", script]).start()
    first = next(line for line in child.lines(tick=0.05) if line is not None)
    grandchild = psutil.Process(int(first.text))
    assert os.getpgid(grandchild.pid) == child.pid != os.getpgid(0)
    started = time.monotonic()
    child.stop(grace=1.0)
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert time.monotonic() - started < 5
    psutil.wait_procs([grandchild], timeout=5)
    assert not grandchild.is_running() or grandchild.status() == psutil.STATUS_ZOMBIE


def test_child_dies_with_its_parent_even_on_sigkill(tmp_path):
    """What protects pt-osc from being orphaned when the task process is SIGKILLed (no on_kill)."""
    parent_script = textwrap.dedent("""
        import sys, time
        from shift_provider.ptosc.process import ChildProcess
        child = ChildProcess(["sleep", "300"]).start()
        print(child.pid, flush=True)
        time.sleep(300)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_script], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    assert child.ppid() == parent.pid
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    gone, alive = psutil.wait_procs([child], timeout=10)
    assert not alive, "the child outlived its SIGKILLed parent"


# -- the log shipper ------------------------------------------------------------------------------

class FlakySink:
    """A real sink (a list of shipped chunks) that refuses while ``down``: an API outage."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.down = False

    def __call__(self, text: str) -> None:
        if self.down:
            raise ConnectionError("shift API unreachable")
        self.chunks.append(text)


def test_shipper_loses_nothing_across_an_outage_and_sends_nothing_twice(tmp_path):
    sink = FlakySink()
    path = tmp_path / "id-1" / "ptosc-output.log"
    shipper = LogShipper(path, sink, sync_interval=3600, chunk_bytes=64).open()
    shipper.write("stdout", "first line")
    assert shipper.sync()
    sink.down = True
    for i in range(20):
        shipper.write("stderr", f"line {i}")
    assert not shipper.sync()
    sink.down = False
    shipper.write("stdout", "last line")
    assert shipper.close()
    shipped = "".join(sink.chunks)
    assert shipped == path.read_text()
    assert all(chunk.endswith("\n") for chunk in sink.chunks)
    lines = shipped.splitlines()
    assert len(lines) == 22 and lines[0].endswith(" stdout: first line") and lines[-1].endswith(" stdout: last line")
    assert lines[0][:4].isdigit() and lines[0][10] == "T"


def test_each_line_carries_one_timestamp_and_ptoscs_text_verbatim(tmp_path):
    """File: ours, or pt-osc's own when it stamped the line; task log: none (Airflow stamps each record)."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    task_log = logging.getLogger("test.ptosc.stamps")
    task_log.propagate = False
    task_log.setLevel(logging.INFO)
    task_log.addHandler(Keep())
    shipper = LogShipper(tmp_path / "ptosc-output.log", lambda text: None, sync_interval=3600,
                         task_log=task_log).open()
    shipper.write("stdout", "2026-11-25T17:00:46 Creating triggers...")
    shipper.write("stderr", "Copying `app`.`orders`:  45% 00:30 remain")
    shipper.note("copy done")
    shipper.close()
    lines = (tmp_path / "ptosc-output.log").read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
    assert lines[0] == "2026-11-25T17:00:46 Creating triggers..."
    assert re.fullmatch(stamp + r"\.\d{3}Z stderr: Copying `app`\.`orders`:  45% 00:30 remain", lines[1])
    assert re.fullmatch(stamp + r"\.\d{3}Z shift: copy done", lines[2])
    assert records == ["pt-osc stdout: Creating triggers...",
                       "pt-osc stderr: Copying `app`.`orders`:  45% 00:30 remain", "copy done"]


def test_a_killed_shippers_tail_is_sent_by_the_next_run(tmp_path):
    sink = FlakySink()
    path = tmp_path / "ptosc-output.log"
    first = LogShipper(path, sink, sync_interval=3600).open()
    first.write("stdout", "shipped by the first run")
    first.sync()
    first.write("stdout", "written, never shipped (the worker died)")
    first._file.flush()  # the OS has it; the process dies before its sync
    second = LogShipper(path, sink, sync_interval=3600).open()
    second.write("stdout", "second run")
    second.close()
    assert "".join(sink.chunks) == path.read_text()
    assert len(path.read_text().splitlines()) == 3


def test_200mb_of_output_keeps_memory_flat(tmp_path):
    """The real streaming and log shipping fed > 200 MiB by a real child: RSS grows < 20 MB."""
    script = textwrap.dedent("""
        import sys
        line = "x" * 999 + "\\n"
        out, err = sys.stdout.write, sys.stderr.write
        for i in range(210_000):
            out(line)
            if i % 2100 == 0:
                err(f"Copying `db`.`t`: {i // 2100:3d}% 00:{59 - i // 4200:02d} remain\\n")
    """)
    shipped = open(tmp_path / "shipped.log", "w")  # noqa: SIM115 - closed below
    task_log = logging.getLogger("test.ptosc.memory")
    task_log.propagate = False
    task_log.setLevel(logging.INFO)
    handler = logging.FileHandler(os.devnull)
    task_log.addHandler(handler)
    shipper = LogShipper(tmp_path / "id-1" / "ptosc-output.log", shipped.write, sync_interval=0.5,
                         task_log=task_log).open()
    me = psutil.Process()
    baseline = peak = me.memory_info().rss
    child = ChildProcess([sys.executable, "-c", script]).start()
    count, percents = 0, []
    for line in child.lines(tick=0.2):
        if line is not None:
            shipper.write(line.stream, line.text)
            event = ptosc.parse_line(line.text)
            if event.kind == ptosc.EventKind.PROGRESS:
                percents.append(event.percent)
            count += 1
            if count % 10_000 == 0:
                peak = max(peak, me.memory_info().rss)
        shipper.maybe_sync()
    assert child.wait() == 0
    assert shipper.close()
    shipped.close()
    task_log.removeHandler(handler)
    handler.close()
    peak = max(peak, me.memory_info().rss)
    assert count == 210_100 and percents == list(range(100))
    size = (tmp_path / "id-1" / "ptosc-output.log").stat().st_size
    assert size > 200 * 1024 * 1024
    assert (tmp_path / "shipped.log").stat().st_size == size
    assert peak - baseline < 20 * 1024 * 1024, f"RSS grew by {(peak - baseline) / 2**20:.1f} MB"


# -- names ---------------------------------------------------------------------------------

def test_shadow_and_trigger_names_are_pt_osc_s_and_name_their_migration():
    """The shadow table is per migration (its id, never clipped); the triggers are pt-osc 3.2.1's, per table."""
    assert ptosc.shadow_table_name("employees", 43) == "_employees_new_43"
    long = ptosc.shadow_table_name("y" * 64, 1234567)
    assert len(long) == 64 and long.endswith("_new_1234567")
    assert ptosc.shadow_owner("employees", "_employees_new_43") == 43
    assert ptosc.shadow_owner("y" * 64, long) == 1234567
    for name in ("_employees_new", "_employees_new_043", "_other_new_43", "_employees_new_x"):
        assert ptosc.shadow_owner("employees", name) is None
    assert ptosc.legacy_shadow_table_name("employees") == "_employees_new"
    assert ptosc.trigger_names("app-1", "orders") == [f"pt_osc_app_1_orders_{x}" for x in ("del", "upd", "ins")]
    assert all(len(n) == 64 for n in ptosc.trigger_names("d" * 64, "t" * 64))
