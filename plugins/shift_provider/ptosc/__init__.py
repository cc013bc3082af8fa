"""Everything shift knows about pt-online-schema-change: argv, output, exit codes.

Commands are argv lists (never a shell); credentials travel in a 0600 defaults
file passed first, so no password is ever visible in /proc/<pid>/cmdline.
Output parsing turns pt-osc's stderr lines into plain-value events that the
copy operator pushes to XCom and the shift API.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from shift_provider.contract.codes import RunType
from shift_provider.contract.models import Migration
from shift_provider.exceptions import MigrationStepError
from shift_provider.mysql import admission
from shift_provider.mysql.sql import MAX_NAME, parse_ddl
from shift_provider.settings import Settings

# pt-osc 3.x exit codes (from the tool's own %exit_status table).
EXIT_CODES = {
    0: "no error",
    1: "invalid parameters",
    2: "unsupported MySQL version",
    3: "minimum requirements not met",
    4: "the table has no PRIMARY or UNIQUE key",
    5: "invalid plugin file",
    6: "invalid --alter-foreign-keys-method",
    7: "invalid key size",
    9: "cannot determine key size, not safe to ascend, or error altering the new table",
    10: "error creating the new table",
    11: "error altering the new table, or the table already has triggers",
    12: "error creating triggers",
    13: "error restoring triggers",
    14: "error swapping tables",
    15: "error updating foreign keys",
    16: "error dropping the old table",
    17: "unsupported operation",
    18: "MySQL connection error",
    19: "lost the MySQL connection",
    255: "the tool died",
}

# The Go runner's flags, kept as shift users know them: with the default custom options
# the copy pauses at 125 running threads and aborts at 200.
DEFAULT_MAX_LOAD_THREADS = 125
DEFAULT_CRITICAL_THREADS = 200
TRIES = "create_triggers:200:1,copy_rows:10000:1"
SET_VARS = "wait_timeout=600,lock_wait_timeout=1"


class Execution(str, Enum):
    """How pt-osc runs: ``--dry-run`` (prepare) or ``--execute`` (the copy). Not shift's Mode (table/view)."""

    DRY_RUN = "dry-run"
    EXECUTE = "execute"


@dataclass(frozen=True)
class Command:
    """A pt-osc invocation: the argv (secret-free: credentials are in the defaults file)."""

    argv: list[str]
    new_table: str


def alter_clause(migration: Migration) -> str:
    """The ALTER clause pt-osc wants, refused when the DDL changes another table."""
    try:
        parsed = parse_ddl(migration.ddl_statement)
    except ValueError as exc:
        raise MigrationStepError(f"ddl_statement cannot be run: {exc}") from None
    if parsed.alter_clause is None:
        raise MigrationStepError("ddl_statement is not an ALTER TABLE; pt-osc only runs ALTERs")
    if parsed.table != migration.table:
        raise MigrationStepError(
            f"ddl_statement alters table {parsed.table!r} but the migration is for table {migration.table!r}"
        )
    out_of_scope = admission.reason(parsed, migration.ddl_statement, migration.database)
    if out_of_scope:  # the copy and the rename check again: nothing out of scope reaches pt-osc or the table
        raise MigrationStepError(f"ddl_statement is out of scope: {out_of_scope}")
    return parsed.alter_clause


def checked_config_path(config_path: str, settings: Settings) -> str:
    """A custom_options config_path must be an existing file inside an allowed directory."""
    real = os.path.realpath(config_path)
    allowed = [os.path.realpath(d) for d in settings.allowed_config_dirs]
    if not any(real.startswith(d.rstrip("/") + "/") for d in allowed):
        raise MigrationStepError(
            f"config_path {config_path!r} is outside the allowed directories {settings.allowed_config_dirs}"
        )
    if not os.path.isfile(real):
        raise MigrationStepError(f"config_path {config_path!r} does not exist")
    return real


def unsupported_table(migration: Migration) -> str | None:
    """Why pt-osc cannot alter this table, or None.

    pt-osc 3.2 looks the table up by a name it quotes as latin1 text, so it never
    finds a table whose name holds non-ASCII characters or a quote.
    """
    if migration.table.isascii() and "'" not in migration.table:
        return None
    return (f"pt-online-schema-change cannot alter table {migration.table!r}: it does not find tables whose "
            "names hold non-ASCII characters or a quote; approve the migration as a short run instead")


@dataclass(frozen=True)
class LoadLimits:
    """Threads_running at which pt-osc pauses the copy (max-load) and aborts it (critical-load)."""

    max_load: int
    critical_load: int


def load_limits(max_threads_running: int) -> LoadLimits:
    """Throttle before aborting, whatever ``max_threads_running`` says.

    The Go runner passed the option as ``--critical-load`` next to a fixed
    ``--max-load=Threads_running=125``, so any value up to 125 aborted the copy before it
    ever paused. Here the copy pauses at the option, capped at 125, and aborts only at
    1.6 times that (the defaults' own 200/125), or at the option when it is higher. So
    max-load is always below critical-load, a lower option never throttles or aborts
    later than a higher one, and 200 (the default) and above keep the Go runner's flags.
    """
    max_load = max(1, min(int(max_threads_running), DEFAULT_MAX_LOAD_THREADS))
    ratio_ceil = -(-max_load * DEFAULT_CRITICAL_THREADS // DEFAULT_MAX_LOAD_THREADS)
    return LoadLimits(max_load, max(int(max_threads_running), ratio_ceil, max_load + 1))


def max_load_threads_running(migration: Migration) -> int:
    """The Threads_running level at which the copy waits (its --max-load); the checksum waits there too."""
    return load_limits(migration.custom_options.max_threads_running).max_load


def received_limits(argv: list[str]) -> dict[str, str]:
    """The throttle and abort settings pt-osc gets from this argv (and its --config file), for the log.

    pt-osc reads the --config file first and the command line after it; a later option
    wins over an earlier one. Keys without a value are left out (pt-osc's own default then).
    """
    wanted = ("max-load", "critical-load", "max-lag")
    found: dict[str, str] = {}
    for arg in argv[1:]:
        if arg.startswith("--config="):
            try:
                lines = Path(arg.split("=", 1)[1]).read_text().splitlines()
            except (OSError, ValueError):  # unreadable or not text: pt-osc itself will say so
                lines = []
            for line in lines:
                key, _, value = line.strip().partition("=")
                if key.strip() in wanted and value.strip():
                    found[key.strip()] = value.strip()
        for key in wanted:
            if arg.startswith(f"--{key}="):
                found[key] = arg.split("=", 1)[1]
    return found


def dsn(migration: Migration, defaults_file: Path) -> str:
    """h=,P=,D=,t= plus F= (the defaults file), which pt-osc honours wherever it stands."""
    for value in (migration.host, migration.database, migration.table, str(defaults_file)):
        if "," in value or "=" in value:
            raise MigrationStepError(f"{value!r} cannot be passed in a pt-osc DSN (contains ',' or '=')")
    reason = unsupported_table(migration)
    if reason:
        raise MigrationStepError(reason)
    return f"F={defaults_file},h={migration.host},P={migration.port},D={migration.database},t={migration.table}"


def build_command(migration: Migration, settings: Settings, defaults_file: Path, mode: Execution,
                  progress_interval: int = 5, extra_args: list[str] | None = None) -> Command:
    """The argv for a dry run or for the copy that stops before the swap."""
    options = migration.custom_options
    new_table = shadow_table_name(migration.table, migration.id)
    argv = [settings.pt_osc_path]
    if options.config_path:
        # --config must be the first option; the defaults file then rides in the DSN (F=).
        argv.append(f"--config={checked_config_path(options.config_path, settings)}")
    else:
        argv.append(f"--defaults-file={defaults_file}")
        limits = load_limits(options.max_threads_running)
        argv += [
            f"--max-load=Threads_running={limits.max_load}",
            f"--critical-load=Threads_running={limits.critical_load}",
            f"--max-lag={options.max_replication_lag}",
            f"--tries={TRIES}",
            f"--set-vars={SET_VARS}",
        ]
    # pt-osc talks latin1 unless told; a database named in UTF-8 is then "unknown".
    # The runner proves a new unique key's data unique itself (unique_keys), at prepare, before the
    # copy and before the swap; pt-osc's own guard refuses every such ALTER, unique data included.
    argv += ["--charset=utf8mb4", "--no-check-unique-key-change", "--alter", alter_clause(migration)]
    if options.recursion_method:
        argv.append(f"--recursion-method={options.recursion_method}")
    # A migration filed as "maybe nocheckalter" is dry-run that way at prepare, before a human decides.
    if migration.runtype == RunType.NOCHECKALTER or (mode == Execution.DRY_RUN
                                                     and migration.runtype == RunType.MAYBE_NOCHECKALTER):
        argv.append("--nocheck-alter")
    if mode == Execution.DRY_RUN:
        argv.append("--dry-run")
    else:
        argv += [
            "--execute", "--no-swap-tables", "--no-drop-new-table", "--no-drop-triggers",
            f"--new-table-name={new_table}", f"--progress=time,{int(progress_interval)}",
        ]
    argv += list(settings.ptosc_extra_args) + list(extra_args or [])
    argv.append(dsn(migration, defaults_file))
    return Command(argv=argv, new_table=new_table)


def check_runnable(migration: Migration, settings: Settings) -> None:
    """Raise now what ``build_command`` would refuse (DSN values, config_path, the ALTER clause), so a
    migration pt-osc can never run is refused before any SQL reaches the server."""
    build_command(migration, settings, Path("defaults.cnf"), Execution.DRY_RUN)


def version(pt_osc_path: str) -> str:
    """pt-osc's version string, e.g. '3.2.1'."""
    out = subprocess.run([pt_osc_path, "--version"], capture_output=True, text=True, timeout=60).stdout
    return out.strip().split()[-1] if out.strip() else "unknown"


# --- output parsing -------------------------------------------------------

_PROGRESS = re.compile(r"^Copying `(?P<db>(?:[^`]|``)+)`\.`(?P<table>(?:[^`]|``)+)`:\s+(?P<pct>\d+)% (?P<eta>\S+) remain")
_ETA = re.compile(r"^(?:(?P<d>\d+)\+)?(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+)$")
_WAITING = (
    re.compile(r"^Replica lag is (?P<lag>\S+) seconds on (?P<host>.+?)\.\s+Waiting\.$"),
    re.compile(r"^\(\d\) Replica '(?P<host>.+)' is stopped\.\s+Waiting\.$"),
    re.compile(r"^Pausing because (?P<what>.+?)\.?$"),
    re.compile(r"^Waiting forever for new table"),
    re.compile(r"^Waiting for "),
)


# pt-osc stamps some lines itself ("2026-11-25T17:00:46 Creating triggers..."), in local time.
_OWN_STAMP = re.compile(r"^(?P<stamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?) (?P<rest>.*)$")


def own_timestamp(line: str) -> tuple[str | None, str]:
    """(pt-osc's own timestamp or None, the text after it), so no line carries two timestamps."""
    match = _OWN_STAMP.match(line)
    return (match["stamp"], match["rest"]) if match else (None, line)


class EventKind(str, Enum):
    PROGRESS = "progress"
    WAITING = "waiting"
    OTHER = "other"


@dataclass(frozen=True)
class OutputEvent:
    """One line of pt-osc output, classified; progress carries percent and ETA seconds."""

    kind: EventKind
    line: str
    percent: int | None = None
    eta_seconds: int | None = None


def eta_to_seconds(text: str) -> int | None:
    """'MM:SS', 'HH:MM:SS' or 'D+HH:MM:SS' to seconds."""
    match = _ETA.match(text)
    if not match:
        return None
    parts = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def parse_line(line: str) -> OutputEvent:
    text = line.rstrip("\n")
    match = _PROGRESS.match(text)
    if match:
        return OutputEvent(EventKind.PROGRESS, text, int(match["pct"]), eta_to_seconds(match["eta"]))
    if any(p.match(text) for p in _WAITING):
        return OutputEvent(EventKind.WAITING, text)
    return OutputEvent(EventKind.OTHER, text)


# Exit codes that say the server or the link failed, not the migration: a retry may succeed.
TRANSIENT_EXITS = frozenset({18, 19})
# pt-osc's words for the same (it often exits 255 or 11 after them).
_TRANSIENT = re.compile(r"Lost connection to (MySQL|MariaDB) server|MySQL server has gone away|Can't connect to "
                        r"|Server shutdown in progress|Connection was killed|Deadlock found when trying to get lock",
                        re.IGNORECASE)
# Lines that state why pt-osc failed (the DBD error, its own refusals), as opposed to its chatter.
_REASON = re.compile(r"^Message: |\b(error|failed|cannot|can't|could not|does not|doesn't|not supported|unsupported|refus"
                     r"|invalid|unknown|must|required|aborting|duplicate|truncated|too long|out of range"
                     r"|has triggers|no (primary|unique))\b|^DBD::|^Error ", re.IGNORECASE)
# pt-osc's own lines that state no reason, even when they say "not" (the cleanup it skipped as told).
_CHATTER = re.compile(r"^(Not dropping|No more warnings about|Level: |Code: |Query: |To drop the new table|DROP TABLE IF EXISTS|Dropping |Dropped |"
                      r"`[^`]+`\.`[^`]+` was not altered|Altering |Creating |Created |Copying approximately|"
                      r"Operation, tries, wait|No slaves found|\s+\w+, \d+, \d)")
# The copy (INSERT IGNORE ... SELECT) raised a warning: rows were skipped or changed (truncated, defaulted,
# dropped as duplicates). pt-osc still exits 0; the shadow table does not hold the original's data.
_COPY_WARNING = re.compile(r"^Copying rows caused a MySQL error (\d+)")
# pt-osc lines a DBA reads as "done" or "drop this" while the copy has only stopped before the swap.
_MISLEADING = re.compile(r"^Successfully altered |To drop the new table, execute:|^DROP TABLE IF EXISTS ")
NOT_SWAPPED_NOTE = "  [shift: not swapped yet: the rename step does that]"
_TOOL_LINE = re.compile(r"\s+at \S*pt-online-schema-change line \d+\.?$")
REASON_MAX_CHARS = 1500


@dataclass(frozen=True)
class Failure:
    """Why a pt-osc run failed: its own reason line(s), and whether a retry may simply succeed."""

    exit_code: int | None
    meaning: str
    reasons: list[str]
    transient: bool

    @property
    def message(self) -> str:
        text = f"pt-online-schema-change exited {self.exit_code} ({self.meaning})"
        if self.reasons:
            text += ": " + " | ".join(self.reasons)
        return text[:REASON_MAX_CHARS]


def exit_meaning(exit_code: int | None) -> str:
    if exit_code is None:
        return "no exit code"
    if exit_code < 0:  # subprocess reports death by signal N as -N
        try:
            return f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"killed by signal {-exit_code}"
    return EXIT_CODES.get(exit_code, "unknown error")


def reason_lines(lines: list[str]) -> list[str]:
    """pt-osc's reason for failing, from its output: the lines that state an error, without its chatter.

    Its last lines are the cleanup it skipped ("Not dropping ...", "To drop the new table,
    execute: ..."), which say nothing about why; the reason comes before them. When no line
    reads like a reason, the last lines that are not chatter stand in.
    """
    kept = [_TOOL_LINE.sub("", line.strip()) for line in lines
            if line.strip() and parse_line(line).kind == EventKind.OTHER and not _CHATTER.match(line.strip())]
    reasons = [line for line in kept if _REASON.search(line)]
    chosen = reasons or kept[-3:]
    unique: list[str] = []
    for line in chosen:
        if line not in unique:
            unique.append(line)
    return unique[-4:]


def diagnose(exit_code: int | None, lines: list[str]) -> Failure:
    """Classify a failed run from pt-osc's messages, not its exit code alone (11 and 29 carry many causes)."""
    reasons = reason_lines(lines)
    transient = (exit_code in TRANSIENT_EXITS) or any(_TRANSIENT.search(line) for line in lines[-30:])
    meaning = exit_meaning(exit_code)
    if exit_code and exit_code > 0 and any(_TOOL_LINE.search(line) for line in lines[-30:]):
        # A Perl die (its message ends "at .../pt-online-schema-change line N"): Perl exits with the
        # errno of the moment (11, 29 ...), which is not one of pt-osc's codes.
        meaning = "the tool died; the exit code is an errno, not one of pt-osc's codes"
    return Failure(exit_code, meaning, reasons, transient)


def failure_message(exit_code: int, lines: list[str]) -> str:
    """The tool's own reason, then what the exit code means (the full output stays in the shift log)."""
    return diagnose(exit_code, lines).message


def copy_warning(line: str) -> int | None:
    """The MySQL error number when this line says the row copy raised a warning (data not copied as is)."""
    match = _COPY_WARNING.match(line.strip())
    return int(match.group(1)) if match else None


def annotated(line: str) -> str:
    """A copy-log line, with a note when pt-osc's words would make a DBA think the table is swapped or
    the new table is garbage (it stops before the swap on purpose: the rename step swaps)."""
    return line + NOT_SWAPPED_NOTE if _MISLEADING.search(line.strip()) else line


def is_clean_stderr_end(last_line: str | None) -> bool:
    """A run whose stderr ends on anything but progress/waiting lines is a failure, whatever the exit code."""
    return last_line is None or parse_line(last_line).kind != EventKind.OTHER


# --- the names of what a copy leaves behind -----------------------------------------------
# Every step that looks for a copy's shadow table or triggers asks here, so the naming
# rules of pt-osc (and ours, passed to it as --new-table-name) live in one place.

TRIGGER_PREFIX = "pt_osc_"
TRIGGER_SUFFIXES = ("del", "upd", "ins")
_SHADOW = re.compile(r"_.*_new_([1-9][0-9]*)", re.DOTALL)


def shadow_table_name(table: str, migration_id: int) -> str:
    """``_<table>_new_<id>``, the shadow table of one migration (``--new-table-name``).

    The id makes it per migration: two migrations on one table never share a shadow
    table, and a leftover names the migration it belongs to. The table part is clipped
    so the whole fits in 64 characters; the id never is.
    """
    suffix = f"_new_{int(migration_id)}"
    return f"_{table[:MAX_NAME - 1 - len(suffix)]}{suffix}"


def legacy_shadow_table_name(table: str) -> str:
    """``_<table>_new``, the shadow table of runner versions before the id was in the name (owner unknown)."""
    return f"_{table[:MAX_NAME - 5]}_new"


def shadow_owner(table: str, name: str) -> int | None:
    """The migration id when ``name`` is the shadow table ``shadow_table_name`` gives ``table``, else None."""
    match = _SHADOW.fullmatch(name)
    if match and shadow_table_name(table, int(match[1])) == name:
        return int(match[1])
    return None


def trigger_names(database: str, table: str) -> list[str]:
    """The triggers pt-osc 3.2.1 creates: ``pt_osc_<db>_<table>`` (non-word characters as ``_``,
    clipped to 60) plus ``_del``/``_upd``/``_ins``.

    pt-osc has no option to name them: they are per table, not per run, so two
    copies of one table cannot coexist and the second must be refused, never
    allowed to drop the first's triggers.
    """
    prefix = re.sub(r"\W", "_", f"{TRIGGER_PREFIX}{database}_{table}", flags=re.ASCII)[:60]
    return [f"{prefix}_{suffix}" for suffix in TRIGGER_SUFFIXES]
