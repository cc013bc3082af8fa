"""SQLite persistence and the migration state machine of the reference shift API.

Rows hold the Rails schema's columns and nothing else, and every answer is shaped as
the Rails controller shapes it: ``staged`` alone derives table/mode/action from the
DDL and host/port from the cluster, lists the 5 most recently updated staged
migrations in machine statuses, drops those whose DDL does not parse (unless
canceled) and returns at most 2; every other answer is the bare row.

Every transition is one guarded ``UPDATE ... WHERE status IN (...) [AND lock_version = ?]``
whose rowcount says whether it happened, so concurrent callers (twenty runners racing
for one unstage) cannot both win: SQLite serialises writers and the guard re-checks.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from shift_provider.contract.codes import Action, FileType, Mode, RunType, Status
from shift_provider.reference_api.ddl import DdlError, parse_ddl

MACHINE = (0, 3, 5, 9, 11)
HUMAN = (1, 2, 4, 6, 12, 13)
STARTABLE = (2, 14)
RESUMABLE = (12, 13)
DELETABLE = (0, 1, 2, 14)
CANCELABLE = (3, 4, 5, 6, 11, 12, 13)
UNSTAGE_LIMIT = 2
STAGED_WINDOW = 5  # Rails: migrations_by_state(:machine) takes the 5 most recently updated

INT_FIELDS = ("table_rows_start", "table_size_start", "index_size_start",
              "table_rows_end", "table_size_end", "index_size_end")
UPDATABLE = (*INT_FIELDS, "copy_percentage", "run_host", "work_directory")
RUNTYPE_NAMES = {"undecided": 0, "long": 1, "short": 2, "maybeshort": 3, "nocheckalter": 4, "maybenocheckalter": 5}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS migrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster_name TEXT NOT NULL,
    "database" TEXT NOT NULL,
    ddl_statement TEXT NOT NULL,
    final_insert TEXT,
    pr_url TEXT,
    requestor TEXT,
    approved_by TEXT,
    approved_at TEXT,
    started_at TEXT,
    completed_at TEXT,
    status INTEGER NOT NULL DEFAULT 0,
    staged INTEGER NOT NULL DEFAULT 1,
    runtype INTEGER NOT NULL DEFAULT 0,
    initial_runtype INTEGER NOT NULL DEFAULT 0,
    custom_options TEXT,
    lock_version INTEGER NOT NULL DEFAULT 0,
    run_host TEXT,
    copy_percentage INTEGER,
    editable INTEGER NOT NULL DEFAULT 1,
    meta_request_id INTEGER,
    error_message TEXT,
    table_rows_start INTEGER, table_size_start INTEGER, index_size_start INTEGER,
    table_rows_end INTEGER, table_size_end INTEGER, index_size_end INTEGER,
    work_directory TEXT,
    auto_run INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shift_files (
    migration_id INTEGER NOT NULL,
    file_type INTEGER NOT NULL,
    contents BLOB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (migration_id, file_type)
);
"""

# The columns of Rails' ``migrations`` table (ui/db/schema.rb plus custom_options): a bare
# row has these and no table/host/port/mode/action.
MIGRATION_FIELDS = (
    "id", "created_at", "updated_at", "completed_at", "requestor", "cluster_name", "database",
    "ddl_statement", "final_insert", "pr_url", *INT_FIELDS, "approved_by", "approved_at", "work_directory",
    "started_at", "copy_percentage", "staged", "status", "error_message", "run_host", "lock_version",
    "editable", "runtype", "meta_request_id", "initial_runtype", "auto_run", "custom_options",
)
BOOLEAN_FIELDS = ("staged", "editable", "auto_run")


class NotFound(LookupError):
    """No migration with that id."""


class Invalid(ValueError):
    """A 400: the request cannot be honoured; ``errors`` are shown to the caller."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class ClusterAddress:
    host: str
    port: int


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _as_int(name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        raise Invalid([f"{name} must be an integer, got {value!r}."]) from None


def _as_number(name: str, value: Any) -> float | int | None:
    if value is None or value == "":
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        raise Invalid([f"{name} must be a number, got {value!r}."]) from None
    return int(number) if number.is_integer() else number


def _lock_version(params: dict[str, Any]) -> int | None:
    value = params.get("lock_version")
    if value is None or value == "":
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return -1


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on") if value is not None else False


class Store:
    """All reads and guarded writes of migrations and their files."""

    def __init__(self, db_path: str, clusters: dict[str, ClusterAddress]) -> None:
        self.db_path = str(db_path)
        self.clusters = dict(clusters)
        self._local = threading.local()
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    # -- plumbing -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the
            # write lock before it reads what it guards; busy_timeout waits instead of failing.
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            self._local.conn = conn
        return _Tx(conn)

    def _row(self, conn: sqlite3.Connection, migration_id: Any) -> sqlite3.Row:
        mid = _as_id(migration_id)
        row = conn.execute("SELECT * FROM migrations WHERE id = ?", (mid,)).fetchone()
        if row is None:
            raise NotFound(f"Migration {migration_id} not found.")
        return row

    @staticmethod
    def serialize(row: sqlite3.Row) -> dict[str, Any]:
        data = {name: row[name] for name in MIGRATION_FIELDS}
        for name in BOOLEAN_FIELDS:
            data[name] = bool(data[name])
        return data

    def available_actions(self, row: sqlite3.Row) -> list[str]:
        """What a human may do now (the Rails ``authorized_actions`` for a full admin)."""
        status, action = row["status"], _parsed(row["ddl_statement"]).action
        if action is None:  # Rails rescues a parse failure as an alter
            action = Action.ALTER
        if status == Status.PREPARING:
            return ["delete"]
        if status == Status.AWAITING_APPROVAL:
            if action == Action.ALTER:
                return ["approve_long", "approve_short", "approve_nocheckalter", "delete"]
            return ["approve_short", "delete"]
        if status == Status.AWAITING_START:
            return ["unapprove", "start", "delete", "enqueue"]
        if status == Status.COPY_IN_PROGRESS:
            return ["pause", "cancel"] if action == Action.ALTER else ["cancel"]
        if status == Status.AWAITING_RENAME:
            return ["rename", "cancel"]
        if status in (Status.RENAME_IN_PROGRESS, Status.PAUSING, 6):
            return ["cancel"]
        if status in (Status.PAUSED, Status.ERROR):
            return ["resume", "cancel"]
        if status == Status.ENQUEUED:
            # Rails lists dequeue/delete; start is what its queue does, so a client may do it too
            return ["dequeue", "start", "delete"]
        return []

    def get(self, migration_id: Any) -> dict[str, Any]:
        with self._connect() as conn:
            return self.serialize(self._row(conn, migration_id))

    def show(self, migration_id: Any) -> dict[str, Any]:
        with self._connect() as conn:
            row = self._row(conn, migration_id)
            return {"migration": self.serialize(row), "available_actions": self.available_actions(row)}

    def _guarded_update(self, migration_id: Any, sets: dict[str, Any], where: str = "",
                        where_args: tuple = (), raw_set: str = "") -> tuple[bool, sqlite3.Row]:
        """One atomic guarded UPDATE; lock_version and updated_at move with every change."""
        assignments = ", ".join([*(f'"{k}" = ?' for k in sets), *([raw_set] if raw_set else [])])
        sql = (f"UPDATE migrations SET {assignments}{', ' if assignments else ''}"
               f"lock_version = lock_version + 1, updated_at = ? WHERE id = ?{where}")
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._row(conn, migration_id)
                cursor = conn.execute(sql, (*sets.values(), _now(), row["id"], *where_args))
                changed = cursor.rowcount == 1
                row = self._row(conn, migration_id)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return changed, row

    # -- human side -----------------------------------------------------------------------

    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        errors = []
        cluster_name = str(params.get("cluster_name") or "").strip()
        database = str(params.get("database") or "").strip()
        ddl = params.get("ddl_statement")
        if not cluster_name:
            errors.append("Cluster name can't be blank.")
        elif cluster_name not in self.clusters:
            errors.append(f"Cluster name {cluster_name!r} is not a known cluster.")
        if not database:
            errors.append("Database can't be blank.")
        elif len(database) > 64 or "`" in database:
            errors.append("Database is not a valid name.")
        parsed = None
        try:
            parsed = parse_ddl(ddl if isinstance(ddl, str) else "")
        except DdlError as exc:
            errors.append(str(exc))
        if parsed and parsed.database and database and parsed.database != database:
            errors.append(f"Ddl statement names database {parsed.database!r}, not {database!r}.")
        custom = params.get("custom_options")
        if isinstance(custom, dict):
            custom = json.dumps(custom)
        elif custom in ("", None):
            custom = None
        elif isinstance(custom, str):
            try:
                if not isinstance(json.loads(custom), dict):
                    errors.append("Custom options must be a JSON object.")
            except json.JSONDecodeError:
                errors.append("Custom options must be valid JSON.")
        else:
            errors.append("Custom options must be a JSON object.")
        if errors:
            raise Invalid(errors)
        now = _now()
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            cursor = conn.execute(
                'INSERT INTO migrations (cluster_name, "database", ddl_statement, final_insert, pr_url,'
                " requestor, status, staged, runtype, initial_runtype, custom_options,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 0, 1, 0, ?, ?, ?, ?)",
                (cluster_name, database, ddl, params.get("final_insert") or "",
                 params.get("pr_url"), params.get("requestor"), int(parsed.default_runtype), custom, now, now),
            )
            conn.execute("COMMIT")
            return self.show(cursor.lastrowid)

    def human_step(self, step: str, migration_id: Any, params: dict[str, Any]) -> dict[str, Any]:
        """approve, unapprove, start, enqueue, dequeue, pause, rename, resume, cancel: 400 unless done."""
        with self._connect() as conn:
            row = self._row(conn, migration_id)
        lock = _lock_version(params)
        action_name = step
        sets: dict[str, Any] = {}
        from_statuses: tuple[int, ...]
        needs_lock = True
        if step == "approve":
            runtype_param = str(params.get("runtype") or "").strip().lower()
            runtype = RUNTYPE_NAMES.get(runtype_param)
            if runtype is None and runtype_param.isdigit():
                runtype = int(runtype_param)
            names = {v: k for k, v in RUNTYPE_NAMES.items()}
            action_name = f"approve_{names.get(runtype, runtype_param)}"
            from_statuses = (Status.AWAITING_APPROVAL,)
            sets = {"status": Status.AWAITING_START, "runtype": runtype,
                    "approved_by": params.get("approver"), "approved_at": _now()}
        elif step == "unapprove":
            from_statuses = (Status.AWAITING_START,)
            sets = {"status": Status.AWAITING_APPROVAL, "runtype": RunType.UNDECIDED,
                    "approved_by": None, "approved_at": None}
        elif step == "start":
            from_statuses = STARTABLE
            sets = {"status": Status.COPY_IN_PROGRESS, "staged": 1, "started_at": _now(),
                    "auto_run": int(_truthy(params.get("auto_run")))}
        elif step == "enqueue":
            from_statuses = (Status.AWAITING_START,)
            sets = {"status": Status.ENQUEUED, "auto_run": 1}
        elif step == "dequeue":
            from_statuses = (Status.ENQUEUED,)
            sets = {"status": Status.AWAITING_START, "auto_run": 0}
        elif step == "pause":
            needs_lock = False
            from_statuses = (Status.COPY_IN_PROGRESS,)
            sets = {"status": Status.PAUSING, "staged": 1, "auto_run": 0}
        elif step == "rename":
            from_statuses = (Status.AWAITING_RENAME,)
            sets = {"status": Status.RENAME_IN_PROGRESS, "staged": 1}
        elif step == "resume":
            from_statuses = RESUMABLE
            sets = {"status": Status.COPY_IN_PROGRESS, "staged": 1, "error_message": None,
                    "auto_run": int(_truthy(params.get("auto_run")))}
        elif step == "cancel":
            needs_lock = False
            from_statuses = CANCELABLE
            sets = {"status": Status.CANCELED, "staged": 1}
        else:  # pragma: no cover - routes only pass the steps above
            raise Invalid([f"Unknown step {step!r}."])
        errors = []
        if action_name not in self.available_actions(row):
            errors.append("Invalid action.")
        if needs_lock and lock != row["lock_version"]:
            errors.append("Incorrect lock_version supplied.")
        if errors:
            raise Invalid(errors)
        placeholders = ", ".join("?" for _ in from_statuses)
        where = f" AND status IN ({placeholders})"
        args: tuple = tuple(int(s) for s in from_statuses)
        if needs_lock:
            where += " AND lock_version = ?"
            args += (lock,)
        changed, row = self._guarded_update(row["id"], sets, where, args)
        if not changed:  # someone moved it between our read and our write
            raise Invalid(["Invalid action."] if row["status"] not in from_statuses
                          else ["Incorrect lock_version supplied."])
        return {"migration": self.serialize(row), "available_actions": self.available_actions(row)}

    def delete(self, migration_id: Any, params: dict[str, Any]) -> None:
        lock = _lock_version(params)
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._row(conn, migration_id)
                placeholders = ", ".join("?" for _ in DELETABLE)
                cursor = conn.execute(
                    f"DELETE FROM migrations WHERE id = ? AND status IN ({placeholders}) AND lock_version = ?",
                    (row["id"], *DELETABLE, lock),
                )
                if cursor.rowcount == 1:
                    conn.execute("DELETE FROM shift_files WHERE migration_id = ?", (row["id"],))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        if cursor.rowcount != 1:
            errors = []
            if row["status"] not in DELETABLE:
                errors.append("Invalid action.")
            if lock != row["lock_version"]:
                errors.append("Incorrect lock_version supplied.")
            raise Invalid(errors or ["Invalid action."])

    # -- runner side ----------------------------------------------------------------------

    def staged(self) -> list[dict[str, Any]]:
        """As Rails: the 5 most recently updated staged machine migrations, parse failures
        dropped (unless canceled), derived fields added, at most 2 returned."""
        placeholders = ", ".join("?" for _ in MACHINE)
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT * FROM migrations WHERE staged = 1 AND status IN ({placeholders})"
                " ORDER BY updated_at DESC, id DESC LIMIT ?",
                (*MACHINE, STAGED_WINDOW),
            ).fetchall()
        result = []
        for row in rows:
            parsed = _parsed(row["ddl_statement"])
            if parsed.error and row["status"] != Status.CANCELED:
                continue
            data = self.serialize(row)
            if data["runtype"] == RunType.UNDECIDED:
                # Rails: an undecided runtype is served as long unless the DDL is surely short
                data["runtype"] = int(RunType.LONG if parsed.runtype in (None, RunType.MAYBE_SHORT,
                                                                         RunType.MAYBE_NOCHECKALTER)
                                      else parsed.runtype)
            data["table"] = parsed.table
            data["mode"] = None if parsed.mode is None else int(parsed.mode)
            data["action"] = None if parsed.action is None else int(parsed.action)
            address = self.clusters.get(row["cluster_name"])
            if address is None:  # Rails: `mig.cluster.rw_host || next`, then compact
                continue
            data["host"], data["port"] = address.host, address.port
            result.append(data)
        return result[:UNSTAGE_LIMIT]

    def unstage(self, migration_id: Any) -> dict[str, Any]:
        """The claim: exactly one caller flips staged 1 -> 0; the others get ``{}``."""
        changed, row = self._guarded_update(migration_id, {"staged": 0}, " AND staged = 1")
        return self.serialize(row) if changed else {}

    def next_step(self, migration_id: Any) -> dict[str, Any]:
        placeholders = ", ".join("?" for _ in MACHINE)
        # status + 1 in the same statement as the guard, so two calls cannot skip a step
        _, row = self._guarded_update(
            migration_id, {}, f" AND staged = 0 AND status IN ({placeholders})", MACHINE,
            raw_set="status = status + 1",
        )
        return self.serialize(row)

    def update(self, migration_id: Any, params: dict[str, Any]) -> dict[str, Any]:
        sets: dict[str, Any] = {}
        for name in UPDATABLE:
            if name not in params:
                continue
            value = params[name]
            if name in INT_FIELDS:
                sets[name] = _as_int(name, value)
            elif name == "copy_percentage":
                number = _as_number(name, value)  # an integer column in Rails: 45.7 is stored as 45
                sets[name] = None if number is None else int(number)
            else:
                sets[name] = None if value is None else str(value)
        if not sets:
            return self.get(migration_id)
        _, row = self._guarded_update(migration_id, sets)
        return self.serialize(row)

    def complete(self, migration_id: Any) -> dict[str, Any]:
        _, row = self._guarded_update(migration_id, {"status": Status.COMPLETED, "completed_at": _now()})
        return self.serialize(row)

    def fail(self, migration_id: Any, error_message: Any) -> dict[str, Any]:
        _, row = self._guarded_update(
            migration_id, {"status": Status.FAILED, "error_message": error_message, "auto_run": 0},
        )
        return self.serialize(row)

    def error(self, migration_id: Any, error_message: Any) -> dict[str, Any]:
        _, row = self._guarded_update(
            migration_id, {"status": Status.ERROR, "error_message": error_message, "auto_run": 0},
            " AND status = ?", (int(Status.COPY_IN_PROGRESS),),
        )
        return self.serialize(row)

    def offer(self, migration_id: Any) -> dict[str, Any]:
        _, row = self._guarded_update(migration_id, {"staged": 1}, " AND status = ?",
                                      (int(Status.COPY_IN_PROGRESS),))
        return self.serialize(row)

    def unpin_run_host(self, migration_id: Any) -> dict[str, Any]:
        _, row = self._guarded_update(migration_id, {"run_host": None})
        return self.serialize(row)

    def runner_cancel(self, migration_id: Any) -> dict[str, Any]:
        placeholders = ", ".join("?" for _ in CANCELABLE)
        _, row = self._guarded_update(migration_id, {"status": Status.CANCELED, "staged": 1},
                                      f" AND status IN ({placeholders})", CANCELABLE)
        return self.serialize(row)

    # -- files ----------------------------------------------------------------------------

    def write_file(self, migration_id: Any, file_type: Any, contents: Any, append: bool) -> dict[str, Any]:
        mid, ftype = _as_id(migration_id), _as_int("file_type", file_type)
        wanted = FileType.LOG if append else FileType.STATE
        if ftype != wanted:
            raise Invalid(["File type not appendable" if append else "File type not writable"])
        text = "" if contents is None else str(contents)
        now = _now()
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._row(conn, mid)
                old = conn.execute("SELECT contents, created_at FROM shift_files WHERE migration_id = ?"
                                   " AND file_type = ?", (mid, ftype)).fetchone()
                if old is not None and append:
                    text = zlib.decompress(old["contents"]).decode() + text
                created = old["created_at"] if old is not None else now
                conn.execute(
                    "INSERT OR REPLACE INTO shift_files (migration_id, file_type, contents, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (mid, ftype, zlib.compress(text.encode()), created, now),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        # like Rails: the file record, without its (possibly large) contents
        return {"migration_id": mid, "file_type": ftype, "contents": "Content omitted...",
                "created_at": created, "updated_at": now}

    def get_file(self, migration_id: Any, file_type: Any) -> dict[str, Any] | None:
        mid, ftype = _as_id(migration_id), _as_int("file_type", file_type)
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM shift_files WHERE migration_id = ? AND file_type = ?",
                               (mid, ftype)).fetchone()
        if row is None:
            return None
        return {"migration_id": mid, "file_type": ftype, "contents": zlib.decompress(row["contents"]).decode(),
                "created_at": row["created_at"], "updated_at": row["updated_at"]}


@dataclass(frozen=True)
class _Derived:
    """What Rails' OscParser derives from a DDL: None everywhere (and ``error``) when it cannot."""

    table: str | None = None
    mode: Mode | None = None
    action: Action | None = None
    runtype: RunType | None = None
    error: str | None = None


def _parsed(ddl: Any) -> _Derived:
    try:
        parsed = parse_ddl(ddl if isinstance(ddl, str) else "")
    except DdlError as exc:
        return _Derived(error=str(exc))
    return _Derived(parsed.table, parsed.mode, parsed.action, parsed.default_runtype)


def _as_id(value: Any) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise NotFound(f"Migration {value!r} not found.") from None


class _Tx:
    """Context wrapper so ``with store._connect() as conn`` hands out the thread's connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
