"""One attempt of the pt-osc copy (``CopyRun``): the copy step's engine, apart from its operator.

Its methods are the named sub-steps of a copy, in order: pin the run host, load the
state document, refuse another migration's leftovers, decide whether to resume from
the checkpoint (``copy_resume``), run pt-osc (``ptosc.process``) while streaming its
output, publishing progress and watching shift for a pause, a cancel or the stop file,
then verify the shadow's content (``checksum``) and conclude. The copy task
(``operators.copy``) runs it at copy in progress; the rename task runs ``InlineCopyRun``
(``instant_ddl``) when an instant ALTER falls back to pt-osc. It is here, not in either,
so neither imports the other.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shift_provider import ptosc
from shift_provider.contract.codes import Status
from shift_provider.contract.models import Migration
from shift_provider.contract.state_file import MigrationState, load_state, save_state
from shift_provider.engine import abandon_copy, copy_resume, leftovers, unique_keys
from shift_provider.exceptions import CopyKilled, MigrationStepError, PtOscError
from shift_provider.mysql import bounded_ddl, replica_lag, schema_ops, table_definition
from shift_provider.mysql.bounded_ddl import LockBound
from shift_provider.mysql.sql import qualified
from shift_provider.ptosc import checkpoint as ptosc_checkpoint
from shift_provider.ptosc.log_shipper import LOG_FILE_NAME, LogShipper
from shift_provider.ptosc.process import ChildProcess, OutputLine

if TYPE_CHECKING:  # the operator running this copy (the copy's or the rename's)
    from shift_provider.operators.base import ShiftMigrationOperator

# XCom keys a DBA (or the UI) reads while the copy runs.
XCOM_PERCENTAGE = "copy_percentage"
XCOM_ETA = "eta_seconds"
XCOM_LINE = "progress_line"
XCOM_WAITING = "waiting_reason"  # the current reason pt-osc waits; None once it copies again
XCOM_LAST_WAITING = "last_waiting_reason"  # the latest reason ever seen in this run
XCOM_HISTORY = "copy_progress_history"  # each distinct percentage, in order (at most 101 values)
XCOM_OUTCOME = "copy_outcome"
XCOM_CHECKSUM_PERCENTAGE = "checksum_percentage"
XCOM_CHECKSUM = "checksum"  # the verify sub-step's result: chunks, rows, repairs, seconds
XCOM_RESUME = "copy_resume"  # how this attempt started: resumed from a boundary, or from row 1 and why
XCOM_ROWS = "rows_copied_this_run"  # rows pt-osc copied in this attempt (from its checkpoint)

PUBLISH_INTERVAL = 1.0  # XCom and API progress at most once per second
_END = object()
STOPPING_STATUSES = {Status.PAUSING: "paused", Status.CANCELED: "canceled"}


@dataclass
class CopyResult:
    exit_code: int | None
    stop_reason: str | None  # paused | canceled | stop_file | killed | None
    last_stderr: str | None
    output_tail: list[str]  # pt-osc's last lines, both streams (its reasons go to either)


def run_host_name() -> str:
    """The name pinned as run_host: ``SHIFT_RUN_HOST`` when set (several workers on one host), else the host name."""
    return os.environ.get("SHIFT_RUN_HOST") or socket.gethostname()


class CopyRun:
    """One attempt of the copy; its methods are the named sub-steps, in order."""

    def __init__(self, operator: ShiftMigrationOperator, context: Any, migration: Migration,
                 stop_grace_seconds: float = 5.0) -> None:
        self.op = operator
        self.stop_grace_seconds = stop_grace_seconds
        self.log = operator.log
        self.ti = context["ti"]
        self.migration = migration
        self.settings = operator.settings
        self.api = operator.api
        from shift_provider.hooks.shift_api import ShiftApiHook

        # Periodic calls (progress, log and state sync, control polls) must not stall the copy
        # for a minute when shift is slow: few, short retries; they are repeated anyway.
        self.quick_api = ShiftApiHook(operator.shift_api_conn_id or self.settings.api_conn_id, retry_limit=2,
                                      retry_delay=0.5, max_retry_seconds=5, timeout=10, settings=self.settings)
        self.hook = operator.cluster(migration)
        self.state = MigrationState(migration_id=migration.id)
        self._recorded_shadow = ""  # the shadow table an earlier attempt's state file names
        self.shipper: LogShipper | None = None
        self.process: ChildProcess | None = None
        self.stop_reason: str | None = None
        self.handed_back = False
        self._kill_requested = False
        self._killed_finalized = False
        self._finished = False
        self._busy = True  # False only while waiting for pt-osc output: on_kill may then act at once
        self._percent: int | None = None
        self._eta: int | None = None
        self._progress_line: str | None = None
        self._waiting: str | None = None
        self._last_waiting: str | None = None
        self._history: list[int] = []
        self._copy_warnings = 0  # "Copying rows caused a MySQL error N": the shadow table lacks some data
        self._dirty_progress = False
        self._sent_api_percent: int | None = None
        self._pushed: dict[str, Any] = {}  # the last value pushed per XCom key
        self._version: Future | None = None
        self._cannot_checkpoint: str | None = None  # why this pt-osc cannot checkpoint, or None
        self._checkpoint_path = self.settings.migration_log_dir(migration.id) / ptosc_checkpoint.CHECKPOINT_FILE
        self._resume_path: Path | None = None  # the checkpoint handed to pt-osc when resuming
        self._triggers_created: dict[str, str] = {}
        self._rows_this_run: int | None = None
        now = time.monotonic()
        self._next_publish = now
        self._next_control = now + self.settings.control_poll_interval
        self._next_state = now + self.settings.state_sync_interval

    # -- the step ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        m = self.migration
        if not self.still_copy_in_progress():
            return {"outcome": "not_copying"}
        # pt-osc --version is a Perl start-up (a few hundred ms): asked for while the sub-steps
        # before the copy run, not in front of it.
        prober = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ptosc-version")
        self._version = prober.submit(ptosc.version, self.settings.pt_osc_path)
        prober.shutdown(wait=False)
        self.pin_run_host()
        try:
            self.open_log()
            self.load_state()
            self.refuse_foreign_triggers()
            resuming = self.decide_resume()
            if not resuming:
                self.clean_earlier_attempt()  # first: a refusal below must not leave an earlier attempt's triggers
            unique_keys.check(self.hook, m, ptosc.alter_clause(m), self.log, "before the copy")
            plugin = [] if self._cannot_checkpoint else ptosc_checkpoint.plugin_args()
            with self.hook.defaults_file() as defaults_file:
                command = ptosc.build_command(m, self.settings, defaults_file, ptosc.Execution.EXECUTE,
                                              progress_interval=self.settings.progress_interval, extra_args=plugin)
                self.record_start(command, resuming)
                result = self.run_ptosc(command)
            return self.conclude(result)
        finally:
            self.finish()

    def still_copy_in_progress(self) -> bool:
        """A pause or cancel may have landed between the claim and now: then there is nothing to copy."""
        current = self.api.get_migration(self.migration.id)
        if current.status != Status.COPY_IN_PROGRESS:
            self.log.warning("migration %s is now at %s (%d), not copy in progress: not starting pt-osc",
                             self.migration.id, current.status.name.lower(), current.status)
            self.ti.xcom_push(key=XCOM_OUTCOME, value="not_copying")
            return False
        return True

    def pin_run_host(self) -> None:
        """shift shows (and a pause waits for) the host the copy runs on.

        The percentage is set once the copy knows where it starts (``record_start``): the
        checkpoint's when it resumes, 0 when it copies from the first row.
        """
        host = run_host_name()
        self.api.update(self.migration.id, run_host=host)
        self.log.info("pinned run_host=%s", host)

    def open_log(self) -> None:
        path = self.settings.migration_log_dir(self.migration.id) / LOG_FILE_NAME
        self.shipper = LogShipper(path, lambda text: self.quick_api.append_to_file(self.migration.id, text),
                                  sync_interval=self.settings.log_sync_interval, task_log=self.log).open()
        self.log.info("pt-osc output goes to %s and to the shift log every %ss", path, self.settings.log_sync_interval)

    def load_state(self) -> None:
        m = self.migration
        self.state = load_state(self.api, m.id)
        self.state.database, self.state.table = m.database, m.table
        # An earlier attempt's shadow (recorded, maybe under an older runner's name) is still ours to clean.
        self._recorded_shadow = self.state.new_table
        self.state.new_table = ptosc.shadow_table_name(m.table, m.id)

    def own_leftovers(self) -> list[leftovers.Leftover]:
        """This migration's shadow table and triggers on the table; refuses when another migration's are there."""
        m = self.migration
        return leftovers.refuse_others(self.hook, m.database, m.table, m.id, self._recorded_shadow)

    def refuse_foreign_triggers(self) -> None:
        """pt-osc 3.2.1 exits 11 on a table with triggers; only this migration's own leftovers can be cleaned up.

        Another migration's shadow table or triggers mean it is in flight on this table:
        refused, naming it (``leftovers``), before anything is touched.
        """
        m = self.migration
        copy_triggers = {x.name for x in leftovers.find(self.hook, m.database, m.table) if x.kind == "trigger"}
        self.own_leftovers()
        foreign = [t for t in schema_ops.triggers_on(self.hook, m.database, m.table) if t not in copy_triggers]
        if foreign:
            raise MigrationStepError(
                f"table `{m.database}`.`{m.table}` has triggers {foreign}; pt-online-schema-change 3.2.1 "
                "cannot copy a table that has triggers of its own")

    def decide_resume(self) -> bool:
        """Resume from the state document's checkpoint when ``copy_resume`` proves it usable; else say why not.

        A pt-osc that cannot checkpoint (a user's own ``pt_osc_path``) still copies, from the
        first row every time; the log says so once per attempt.
        """
        m = self.migration
        self._cannot_checkpoint = ptosc_checkpoint.cannot_checkpoint(self.settings.pt_osc_path,
                                                                     self.settings.ptosc_extra_args)
        if self._cannot_checkpoint:
            self.note(f"this copy keeps no checkpoint: {self._cannot_checkpoint}; a stopped copy starts again "
                      "from the first row")
        checkpoint = self.state.checkpoint or {}
        refusal = copy_resume.refusal(self.hook, m, self.state, self._cannot_checkpoint)
        if refusal is None:
            self._resume_path = self._checkpoint_path.with_name(ptosc_checkpoint.RESUME_FILE)
            ptosc_checkpoint.write_resume(self._resume_path, checkpoint)
            self._triggers_created = dict(checkpoint.get("triggers_created") or {})
            start = {"resumed": True, "boundary": checkpoint.get("upper"), "index": checkpoint.get("index"),
                     "rows_copied_before": int(checkpoint.get("rows_copied") or 0),
                     "percentage": ptosc_checkpoint.percentage(checkpoint)}
            self.note(f"resuming the copy after boundary {checkpoint.get('upper')} of index "
                      f"{checkpoint.get('index')}: {start['rows_copied_before']} rows were copied before "
                      f"({start['percentage']}%); shadow table `{checkpoint.get('new_table')}` and its triggers "
                      "are this migration's, unchanged since the checkpoint, and the table's definition is too")
        else:
            start = {"resumed": False, "reason": refusal}
            if checkpoint or self.own_leftovers():
                self.note(f"not resuming from a checkpoint: {refusal}; the copy starts from the first row")
            self.state.checkpoint = {}
        self.ti.xcom_push(key=XCOM_RESUME, value=start)
        return refusal is None

    def clean_earlier_attempt(self) -> None:
        """A copy that cannot resume removes what an earlier attempt left and starts from scratch.

        The shadow table holds a partial copy nobody can vouch for any more, and pt-osc on a
        table still carrying the earlier triggers exits 11. Triggers go first, so writes stop
        reaching the shadow table before it is dropped.
        """
        m = self.migration
        mine = self.own_leftovers()
        triggers = [x.name for x in mine if x.kind == "trigger"]
        shadows = [x.name for x in mine if x.kind == "shadow table"]
        if not mine:
            return
        self.note(f"an earlier copy attempt left triggers {triggers} and shadow table(s) {shadows} (this "
                  "migration's own) that cannot be resumed from: dropping them and copying again from the start")
        bound = LockBound.of(self.settings)  # the live table's writers wait at most this long
        schema_ops.drop_triggers(self.hook, m.database, triggers, bound, self.log)
        for shadow in shadows:
            bounded_ddl.run(self.hook, [f"DROP TABLE IF EXISTS {qualified(m.database, shadow)}"], bound,
                            f"DROP TABLE `{m.database}`.`{shadow}`", self.log)
        self.note(f"dropped triggers {triggers} and shadow table(s) {shadows}")

    def record_start(self, command: ptosc.Command, resuming: bool) -> None:
        s = self.state
        s.new_table = command.new_table
        s.ptosc_version = self._version.result() if self._version else ptosc.version(self.settings.pt_osc_path)
        s.ptosc_args = list(command.argv)  # secret-free: credentials are in the defaults file
        s.copy_status = "running"
        start = ptosc_checkpoint.percentage(s.checkpoint) if resuming else 0
        s.copy_percentage = start
        s.rows_copied = int(s.checkpoint.get("rows_copied") or 0) if resuming else None
        s.triggers = ptosc.trigger_names(self.migration.database, self.migration.table)  # what pt-osc will create
        s.copy_attempts += 1
        if not resuming:
            # pt-osc builds the shadow from the table as it is now: the rename compares the live table with this.
            # A resume keeps the first attempt's (copy_resume proved the table unchanged since).
            s.original_definition = table_definition.fingerprint(self.hook, self.migration.database,
                                                                 self.migration.table)
        try:
            self._checkpoint_path.unlink()  # an earlier attempt's file must not pass for this one's
        except FileNotFoundError:
            pass
        save_state(self.api, s)
        self._percent = start
        self._history = [start]
        self.api.update(self.migration.id, copy_percentage=start)
        self._sent_api_percent = start
        self.note(f"starting pt-online-schema-change {s.ptosc_version} (attempt {s.copy_attempts}, "
                  + (f"resuming at {start}%" if resuming else "from the first row") + "): " + " ".join(command.argv))
        limits = ptosc.received_limits(command.argv)
        self.note("pt-osc load limits as it receives them: "
                  + ", ".join(f"{key}={value}" for key, value in limits.items())
                  + " (pauses the copy at max-load, aborts it at critical-load)")

    # -- running pt-osc ---------------------------------------------------------------------

    def run_ptosc(self, command: ptosc.Command) -> CopyResult:
        tail: deque[str] = deque(maxlen=60)
        last_stderr: str | None = None
        if self._kill_requested:
            return CopyResult(None, "killed", None, [])
        env = None
        if not self._cannot_checkpoint:
            env = ptosc_checkpoint.environment(self._checkpoint_path, self._resume_path)
        self.process = ChildProcess(command.argv, env=env).start()
        self.log.info("pt-osc started, pid %s (own process group)", self.process.pid)
        lines = self.process.lines(tick=0.2)
        while True:
            self._busy = False
            item = next(lines, _END)
            self._busy = True
            if item is _END:
                break
            if item is not None:
                self.on_line(item)
                if item.text.strip() and ptosc.parse_line(item.text).kind == ptosc.EventKind.OTHER:
                    tail.append(item.text)
                if item.stream == "stderr" and item.text.strip():
                    last_stderr = item.text
            self.periodic()
        code = self.process.wait()
        if self._kill_requested:
            self.stop_reason = "killed"
        return CopyResult(code, self.stop_reason, last_stderr, list(tail))

    def on_line(self, line: OutputLine) -> None:
        assert self.shipper is not None
        self.shipper.write(line.stream, ptosc.annotated(line.text))
        if ptosc.copy_warning(line.text) is not None:
            self._copy_warnings += 1
        event = ptosc.parse_line(line.text)
        if event.kind == ptosc.EventKind.PROGRESS:
            self._percent, self._eta, self._progress_line = event.percent, event.eta_seconds, event.line
            if not self._history or self._history[-1] != event.percent:
                self._history.append(event.percent)
            if self._waiting is not None:
                self._waiting = None
            self._dirty_progress = True
        elif event.kind == ptosc.EventKind.WAITING:
            if self._waiting != event.line:
                self.log.warning("pt-osc is waiting: %s", event.line)
            self._waiting = self._last_waiting = event.line
            self._dirty_progress = True

    def periodic(self) -> None:
        """Between lines: publish progress, watch shift and the stop file, sync log and state."""
        if self._kill_requested:
            return
        now = time.monotonic()
        if self._dirty_progress and now >= self._next_publish:
            self._next_publish = now + PUBLISH_INTERVAL
            self.publish_progress()
        if now >= self._next_control and self.stop_reason is None:
            self._next_control = now + self.settings.control_poll_interval
            self.watch_control()
        assert self.shipper is not None
        self.shipper.maybe_sync()
        if now >= self._next_state:
            self._next_state = now + self.settings.state_sync_interval
            self.sync_state(self.quick_api)

    def push(self, key: str, value: Any) -> None:
        """An XCom push only when the value changed: each push is a round trip to Airflow."""
        if key in self._pushed and self._pushed[key] == value:
            return
        self.ti.xcom_push(key=key, value=value)
        self._pushed[key] = value

    def publish_progress(self, final: bool = False) -> None:
        self._dirty_progress = False
        push = self.push
        push(key=XCOM_PERCENTAGE, value=self._percent)
        push(key=XCOM_ETA, value=self._eta)
        push(key=XCOM_LINE, value=self._progress_line)
        push(key=XCOM_WAITING, value=self._waiting)
        push(key=XCOM_LAST_WAITING, value=self._last_waiting)
        push(key=XCOM_HISTORY, value=list(self._history))
        if self._percent is not None and self._percent != self._sent_api_percent:
            try:
                (self.api if final else self.quick_api).update(self.migration.id, copy_percentage=self._percent)
                self._sent_api_percent = self._percent
            except Exception as exc:  # progress is informative; the copy goes on
                self.log.warning("could not send copy_percentage to shift: %s", exc)

    def watch_control(self) -> None:
        """A human pause (11) or cancel (9), or the runner's stop file, stops pt-osc."""
        request = self.stop_request()
        if request is not None:
            self.stop_ptosc(*request)

    def stop_request(self) -> tuple[str, str] | None:
        """(reason, why) when the stop file or shift (pause 11, cancel 9) asks the copy to stop."""
        if self.settings.stop_requested:
            return "stop_file", f"stop file {self.settings.stop_file_path} exists"
        try:
            current = self.quick_api.get_migration(self.migration.id)
        except Exception as exc:
            self.log.warning("could not read migration %s from shift (copy goes on): %s", self.migration.id, exc)
            return None
        if current.status in STOPPING_STATUSES:
            return (STOPPING_STATUSES[current.status],
                    f"shift moved migration {self.migration.id} to {current.status.name.lower()} "
                    f"({int(current.status)})")
        return None

    def stop_ptosc(self, reason: str, why: str) -> None:
        self.stop_reason = reason
        self.note(f"stopping pt-osc: {why}")
        assert self.process is not None
        self.process.stop(self.stop_grace_seconds)

    def refresh_checkpoint(self) -> None:
        """The plugin's latest checkpoint into the state document (with the facts a resume proves against)."""
        latest = ptosc_checkpoint.read(self._checkpoint_path)
        if latest is None:
            return
        m = self.migration
        if not self._triggers_created:
            try:
                self._triggers_created = copy_resume.trigger_created(self.hook, m.database, m.table)
            except Exception as exc:  # the database may be what failed; the checkpoint then is not provable
                self.log.warning("could not read the triggers' creation times: %s", exc)
        latest["triggers_created"] = dict(self._triggers_created)
        latest["alter"] = ptosc.alter_clause(m)
        self.state.checkpoint = latest
        self.state.rows_copied = latest.get("rows_copied")
        self._rows_this_run = latest.get("rows_this_run")
        if self._rows_this_run is not None:
            self.push(XCOM_ROWS, self._rows_this_run)

    def catch_up_percentage(self) -> None:
        """At a stop: the percentage of the last checkpoint when a chunk ended after pt-osc's last progress
        line, so the stopped copy shows where the next one resumes (while it runs, pt-osc's lines rule)."""
        self.refresh_checkpoint()
        reached = ptosc_checkpoint.percentage(self.state.checkpoint) if self.state.checkpoint else 0
        if self._percent is None or reached > self._percent:
            self._percent = reached

    def sync_state(self, api) -> None:
        self.state.copy_percentage = self._percent
        self.refresh_checkpoint()
        try:
            save_state(api, self.state)
        except Exception as exc:
            self.log.warning("could not save the state file to shift (will retry): %s", exc)

    # -- the end ----------------------------------------------------------------------------

    def end_progress(self, percent: int | None, eta: int | None, line: str) -> None:
        """The progress XComs and shift's percentage at an end: one consistent set, nothing stale.

        pt-osc's last progress line ("69% 00:02 remain") describes a moment of the copy, not
        its end; once the copy ended the line says how it ended and the ETA is 0 (done) or
        None (nothing is copying).
        """
        self._percent, self._eta, self._progress_line, self._waiting = percent, eta, line, None
        if percent is not None and (not self._history or self._history[-1] != percent):
            self._history.append(percent)
        self.publish_progress(final=True)

    def conclude(self, result: CopyResult) -> dict[str, Any]:
        m = self.migration
        if result.stop_reason == "killed":
            self.finalize_killed()
            raise CopyKilled(f"copy of migration {m.id} was killed; pt-osc stopped, migration offered back")
        if result.stop_reason is not None:
            return self.conclude_stopped(result.stop_reason)
        if result.exit_code == 0 and ptosc.is_clean_stderr_end(result.last_stderr) and not self._copy_warnings:
            return self.conclude_succeeded()
        failure = ptosc.diagnose(result.exit_code, result.output_tail)
        self.state.copy_status = "failed"
        self.catch_up_percentage()
        if not failure.transient:
            self.remove_triggers_of_failed_copy()
        self.record_leftovers()
        self.sync_state(self.api)
        message = failure.message
        if result.exit_code == 0:
            message = ("pt-online-schema-change exited 0 but reported errors (the shadow table does not hold the "
                       "table's data as is): " + (" | ".join(failure.reasons) or str(result.last_stderr)))
        self.note(message)
        self.end_progress(self._percent, None, f"copy failed at {self._percent or 0}%: {message}"[:500])
        self.ti.xcom_push(key=XCOM_OUTCOME, value="error")
        # The base reports it once, as `error` (resumable): the copy step's failure outcome.
        raise PtOscError(message, exit_code=result.exit_code)

    def verified_leftovers(self) -> list[str]:
        """The triggers and shadow table the rename needs; a "success" without them is not one."""
        triggers = self.record_leftovers()
        shadow = schema_ops.table_exists(self.hook, self.migration.database, self.state.new_table)
        if len(triggers) < 3 or not shadow:
            self.state.copy_status = "failed"
            self.remove_triggers_of_failed_copy()
            self.sync_state(self.api)
            raise PtOscError(f"pt-online-schema-change reported success but left triggers {triggers} and shadow "
                             f"table `{self.state.new_table}` {'present' if shadow else 'missing'}")
        return triggers

    def conclude_succeeded(self) -> dict[str, Any]:
        m = self.migration
        triggers = self.verified_leftovers()
        self.end_progress(100, 0, f"copy done: 100% of `{m.database}`.`{m.table}` copied into "
                                  f"`{self.state.new_table}`")
        from shift_provider.engine import checksum

        try:
            self.verify_content()
        except checksum.ChecksumStopped as stop:
            if stop.reason == "killed":
                self.finalize_killed()
                raise CopyKilled(f"copy of migration {m.id} was killed during its checksum; "
                                 "migration offered back") from None
            return self.conclude_stopped(stop.reason)
        self.state.copy_status = "succeeded"
        self.sync_state(self.api)
        self.note(f"copy done: shadow table `{self.state.new_table}` and triggers {triggers} are in place; "
                  "moving to awaiting rename")
        self.op.report_success(m)
        self.ti.xcom_push(key=XCOM_OUTCOME, value="copied")
        return {"outcome": "copied", "new_table": self.state.new_table, "triggers": triggers}

    def verify_content(self) -> None:
        """Prove the shadow holds the original's rows (content checksum) before awaiting the rename."""
        from shift_provider.engine import checksum
        from shift_provider.engine.rename_steps import alter_expectations

        m = self.migration
        self.state.copy_status = "verifying"
        self.sync_state(self.api)
        said: list[int] = []

        def progress(percent: int, eta: int | None) -> None:
            self.push(XCOM_CHECKSUM_PERCENTAGE, percent)
            self.push(XCOM_ETA, eta)
            if not said or percent // 10 > said[-1] // 10:
                said.append(percent)
                self.note(f"checksum: {percent}%" + (f", {eta}s remain" if eta else ""))

        max_lag = int(ptosc.received_limits(self.state.ptosc_args or ["pt-osc"]).get(
            "max-lag", m.custom_options.max_replication_lag))
        lag = replica_lag.watch_for(self.hook, max_lag, self.note)
        try:
            result = checksum.compare(
                self.hook, m.database, m.table, self.state.new_table,
                renamed_columns=alter_expectations(ptosc.alter_clause(m)).renamed_columns,
                max_threads_running=ptosc.max_load_threads_running(m),
                chunk_seconds=self.settings.checksum_chunk_seconds, progress=progress, note=self.note,
                lag_reason=lag.waiting_reason, between_chunks=self.between_checksum_chunks)
        except checksum.ChecksumMismatch as exc:
            self.state.copy_status = "failed"
            self.state.checksum = exc.result.as_dict() if exc.result else {}
            self.sync_state(self.api)
            self.note(str(exc))
            self.ti.xcom_push(key=XCOM_OUTCOME, value="error")
            raise
        finally:
            lag.close()
        self.state.checksum = result.as_dict()
        self.ti.xcom_push(key=XCOM_CHECKSUM, value=result.as_dict())
        self.note(f"checksum: the shadow table equals the original: {result.rows} rows in {result.chunks} "
                  f"chunk(s), {result.chunks_repaired} chunk(s) copied again ({result.rows_repaired} rows), "
                  f"{result.seconds:.1f}s")

    def between_checksum_chunks(self) -> None:
        """What ``periodic`` does while pt-osc runs, between the checksum's chunks: a kill, pause,
        cancel or the stop file stops it (``ChecksumStopped``); the log and state keep syncing."""
        from shift_provider.engine import checksum

        if self._kill_requested:
            raise checksum.ChecksumStopped("killed")
        now = time.monotonic()
        if now >= self._next_control:
            self._next_control = now + self.settings.control_poll_interval
            request = self.stop_request()
            if request is not None:
                self.note(f"stopping the checksum: {request[1]}")
                raise checksum.ChecksumStopped(request[0])
        assert self.shipper is not None
        self.shipper.maybe_sync()
        if now >= self._next_state:
            self._next_state = now + self.settings.state_sync_interval
            self.sync_state(self.quick_api)

    def conclude_stopped(self, reason: str) -> dict[str, Any]:
        m = self.migration
        self.state.copy_status = "stopped"
        self.record_leftovers()
        self.catch_up_percentage()
        self.sync_state(self.api)
        then = (f"the next attempt resumes after boundary {self.state.checkpoint.get('upper')}"
                if ptosc_checkpoint.resumable(self.state.checkpoint) else "the next attempt copies again from 0%")
        self.end_progress(self._percent, None, f"copy stopped ({reason}) at {self._percent or 0}%; {then}")
        self.note(f"copy stopped ({reason}): {self.state.rows_copied or 0} rows copied in all, "
                  f"{self._rows_this_run or 0} in this run; {then}")
        if reason == "stop_file":
            self.api.offer(m.id)
            self.handed_back = True
            self.note(f"pt-osc stopped because the runner's stop file exists; migration {m.id} offered back "
                      "to shift for another runner (which resumes from the checkpoint when it is still usable)")
        else:
            self.note(f"pt-osc stopped because the migration was {reason}; state saved, no error reported, "
                      "this task claims the " + ("pause and waits at paused (12) for a resume or a cancel"
                                                 if reason == "paused" else "cancel and cleans up"))
        self.ti.xcom_push(key=XCOM_OUTCOME, value=f"stopped:{reason}")
        return {"outcome": "stopped", "reason": reason}

    def remove_triggers_of_failed_copy(self) -> None:
        """A copy that failed on the ALTER or the data will not be used; its triggers would apply every
        application write to a shadow table that may refuse it (a NOT NULL column without a default,
        a narrower column): the application's writes fail. So they go now, under the lock bound.
        A transient fault (lost connection) keeps them: the shadow table is sound and a resume
        cleans up anyway. The partial shadow table stays for a look; a resume or cancel removes it."""
        m = self.migration
        try:
            names = abandon_copy.remove_triggers(self.hook, self.settings, m.database, m.table, self.log)
        except Exception as exc:  # still report the copy's error; say what is left
            self.note(f"the copy failed and its triggers could not be removed ({exc}); they stay on "
                      f"`{m.database}`.`{m.table}` until a resume or cancel removes them")
            return
        self.state.triggers = []
        self.state.checkpoint = {}  # the shadow table no longer follows the table: nothing to resume from
        self._checkpoint_path.unlink(missing_ok=True)
        if names:
            self.note(f"the copy failed: dropped its triggers {names} so the application's writes no longer reach "
                      f"the shadow table `{self.state.new_table}` (kept for a look; a resume or cancel removes it)")

    def record_leftovers(self) -> list[str]:
        m = self.migration
        try:
            mine, _ = leftovers.split(self.hook, m.database, m.table, m.id, self.state.new_table)
            self.state.triggers = [x.name for x in mine if x.kind == "trigger"]
        except Exception as exc:  # the database may be what failed
            self.log.warning("could not list pt-osc triggers: %s", exc)
        return self.state.triggers

    def kill(self) -> None:
        """From on_kill (a signal handler in the main thread): stop pt-osc at once, then hand back.

        When the main thread was inside a sync or an API call, the hand-back is left to it
        (it sees the flag as soon as pt-osc's pipes close) so no call runs re-entrantly.
        """
        if self._finished:  # e.g. on_kill after an execution timeout: finish() already cleaned up
            return
        self._kill_requested = True
        if self.process is not None:
            self.log.warning("task killed: killing pt-osc's process group %s", self.process.pid)
            self.process.stop(grace=2.0)
        if not self._busy:
            self.finalize_killed()

    def finalize_killed(self) -> None:
        if self._killed_finalized:
            return
        self._killed_finalized = True
        m = self.migration
        self.state.copy_status = "killed"
        self.catch_up_percentage()
        self.record_leftovers()
        self.sync_state(self.api)
        if self.shipper is not None:
            self.shipper.note("the task was killed: pt-osc stopped; offering the migration back to shift")
            self.shipper.sync()
        try:
            self.api.offer(m.id)
            self.handed_back = True
            self.log.warning("migration %s offered back to shift", m.id)
        except Exception as exc:
            self.log.error("could not offer migration %s back: %s", m.id, exc)

    def finish(self) -> None:
        """Always: pt-osc gone, logs and state shipped, run_host unpinned."""
        if self.process is not None and self.process.alive():
            self.process.stop(self.stop_grace_seconds)
        if self.shipper is not None:
            if not self.shipper.close():
                self.log.error("some pt-osc output could not be shipped to shift; it stays in %s",
                               self.shipper.path)
        try:
            self.api.unpin_run_host(self.migration.id)
            self.log.info("unpinned run_host")
        except Exception as exc:
            self.log.error("could not unpin run_host of migration %s: %s", self.migration.id, exc)
        self._finished = True

    def note(self, text: str) -> None:
        """Our own lines: the task log and the shift log both say what was done and why."""
        if self.shipper is not None:
            self.shipper.note(text)
        else:
            self.log.info("%s", text)
