"""The hostile-input corpus: malformed and hostile staged migrations, each with its exact outcome.

Shared by tests/e2e/test_hostile_input.py (refused before any SQL, and entries left
alone), test_hostile_sql.py (the database runs something; nothing may change),
test_hostile_lives_ptosc.py and test_hostile_lives_short.py (odd-but-legal names
through a whole life, long and short runs): separate files, so the test workers run
the phases side by side, each on its own servers.

What runs end to end, and why that is enough:

* ``refused``: every case is staged and claimed as the runner does, then asserted at
  the layer that refuses it (``tests.support.hostile_validation``: the claim's model
  validation, or prepare's checks before its first SQL), with its message. Only
  ``END_TO_END_REFUSED`` also runs through the DAGs: one case per layer (claim,
  prepare) and, for the claim, per way of staging (API, SQLite store, proxy, the
  unstage answer), for prepare one per check (the DDL's parse, its target,
  the final insert's shape, pt-osc's options). What the DAGs add to a refusal
  (failing it through the API, no run or one failed run, no SQL, nothing in the
  binlog) does not depend on which field or which check of a layer said no, so each
  case's own message is proved at its layer and the path once per layer; the
  validation test also checks each sampled case is refused by the layer named.
* ``left alone``: all end to end (they cost no run), then the good migration that
  must still be prepared after the hostile ones.
* ``prepared``: all end to end (the database decides); odd-but-legal DDL oddities
  share one migration (``ddl-odd-but-legal``).
* ``db refused``: each claimed as the runner claims it and run through prepare's own
  steps on the real database (``Corpus.prepare_alone``: the test DAG
  ``shift_test_prepare``), not the sensor DAG: the refusal is those steps' alone, and
  the path through the sensor and the failing run is the refused sample's.
* ``full life``: all end to end, several oddities to a migration (an odd database,
  table and column name in one), so every oddity still goes through pt-osc's copy
  and rename (or a short run) to completed with the schema checked.

Every case is staged the way a broken or hostile upstream would serve it: created
through the reference API when it accepts the payload, written straight into its
SQLite store when it refuses it at create time, or rewritten on the wire by a
pass-through proxy (``BrokenUpstream``) for JSON types the store cannot hold.
Then the sensor DAG claims and the runs it triggers run (``claim_and_run``).

Each case names its exact outcome:

* ``refused``: failed through the API (status 10) with a message naming the problem,
  and no SQL: the runner sent no statement mentioning the case's database (general
  log), nothing was written to the binlog while these cases ran, and a snapshot of
  the database (tables, definitions, triggers, content checksums) is unchanged.
* ``left alone``: a staged entry without a usable id; nothing is claimed or failed.
* ``db refused``: the database itself says no (the rolled-back final insert, the
  pt-osc dry run, the create-and-drop); status 10 with the database's reason, and
  the snapshot is unchanged.
* ``prepared``: awaiting approval (1), and prepare changed nothing.
* ``full life``: unicode, reserved-word and odd-but-legal identifiers taken through
  prepare, pt-osc copy and rename (or a short run) to completed (8), with the schema
  really changed and nothing else touched.

Decisions recorded here: a final insert may write into another database the
runner's user can write (the shift reviewer approves the statement as written, as
the Go runner ran it); a ``;`` anywhere in a final insert is refused, even inside
a string (the contract's rule); identifiers with quotes or ``;`` are legal MySQL
names and are quoted, never refused (a backtick or NUL is refused).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from tests.support.e2e import claim_and_run
from tests.support.hostile import BrokenUpstream, RootServer, RunnerTrace, snapshot, stage_raw
from tests.support.hostile_validation import CLAIM, PREPARE, claim_as_the_runner
from tests.support.mariadb import TEST_PASSWORD, TEST_USER
from tests.support.shift_api import ShiftApiServer
from tests.support.tables import columns_of, content_checksum, create_sample_table, q, tables_in, triggers_on

REFUSED, LEFT_ALONE, DB_REFUSED, PREPARED, FULL_LIFE = "refused", "left alone", "db refused", "prepared", "full life"
ALTER = "ALTER TABLE t ADD COLUMN x INT"
INSERT = "INSERT INTO t (name, amount, created) VALUES ('final', 1, '2021-01-01')"
BIG = 70 * 1024  # more than the 64 KiB statement limit


@dataclass
class Case:
    """One hostile migration. ``via``: api (create kwargs), sqlite (stage_raw kwargs), proxy (api + rewrite)."""

    id: str
    expect: str
    message: str = ""
    via: str = "api"
    fields: dict[str, Any] = field(default_factory=dict)
    rewrite: Callable[[dict[str, Any]], Any] | None = None
    table: str = "t"  # the table the case's database holds (besides `victim`)
    database: str | None = None  # a fixed database name (else a fresh h_<hex>)
    runtype: str = "long"  # full life: how a human approves it
    new_column: str = "x"  # full life: the column the DDL adds


def api(expect, message="", **fields):
    return dict(expect=expect, message=message, via="api", fields=fields)


def raw(expect, message="", **fields):
    return dict(expect=expect, message=message, via="sqlite", fields=fields)


def proxy(expect, message, rewrite, **fields):
    return dict(expect=expect, message=message, via="proxy", fields=fields, rewrite=rewrite)


def changed(**changes):
    def rewrite(payload):
        for key, value in changes.items():
            payload[key] = value
        return payload
    return rewrite


ROGUE = dict(cluster_name="rogue")  # served with a host/port no registered cluster has

# -- refused before any SQL -------------------------------------------------------------
REFUSED_CASES = {
    # payload fields, as a broken upstream stores them
    "database-empty": raw(REFUSED, "database is empty", database=""),
    "database-65-chars": raw(REFUSED, "longer than 64 characters", database="d" * 65),
    "database-backtick-injection": raw(REFUSED, "NUL or backtick", database="x`; DROP DATABASE mysql; -- "),
    "database-path": raw(REFUSED, "path character", database="../etc"),
    "database-padded": raw(REFUSED, "leading or trailing spaces", database=" {db}"),
    "table-empty": raw(REFUSED, "table is empty", table=""),
    "table-65-chars": raw(REFUSED, "longer than 64 characters", table="t" * 65),
    "table-backtick-injection": raw(REFUSED, "NUL or backtick", table="t` ADD COLUMN pwned INT; -- "),
    "table-nul": raw(REFUSED, "NUL or backtick", table="t\x00victim"),
    "runtype-text": raw(REFUSED, "runtype must be a numeric code", runtype="long"),
    "runtype-unknown": raw(REFUSED, "runtype: Input should be", runtype=9),
    "mode-missing": raw(REFUSED, "mode is missing for a migration at status preparing", mode=None),
    "mode-unknown": raw(REFUSED, "mode: Input should be", mode=7),
    "action-missing": raw(REFUSED, "action is missing for a migration at status preparing", action=None),
    "action-text": raw(REFUSED, "action must be a numeric code", action="drop"),
    "host-missing": raw(REFUSED, "host must be a non-empty string", host=None, port="{port}", **ROGUE),
    "host-shell": raw(REFUSED, "host is not a valid host name", host="127.0.0.1; rm -rf /", port="{port}",
                      **ROGUE),
    "host-dsn-injection": raw(REFUSED, "host is not a valid host name", host="127.0.0.1,D=mysql,t=user",
                              port="{port}", **ROGUE),
    "host-oversized": raw(REFUSED, "host is not a valid host name", host="h" * 300, port="{port}", **ROGUE),
    "port-missing": raw(REFUSED, "port must be an integer", host="127.0.0.1", port=None, **ROGUE),
    "port-text": raw(REFUSED, "port must be an integer", host="127.0.0.1", port="3306abc", **ROGUE),
    "port-out-of-range": raw(REFUSED, "port must be between 1 and 65535", host="127.0.0.1", port=70000, **ROGUE),
    "port-zero": raw(REFUSED, "port must be between 1 and 65535", host="127.0.0.1", port=0, **ROGUE),
    "ddl-empty": raw(REFUSED, "ddl_statement is empty", ddl_statement="  "),
    "lock-version-text": raw(REFUSED, "lock_version must be an integer", lock_version="v7"),
    "custom-options-not-json": raw(REFUSED, "custom_options is not valid JSON", custom_options="{nope"),
    "custom-options-a-list": raw(REFUSED, "custom_options must be a JSON object", custom_options="[1, 2]"),
    "ddl-enormous": api(REFUSED, "ddl_statement is longer than 65536 characters",
                        ddl=ALTER + " COMMENT '" + "a" * BIG + "'"),
    "final-insert-enormous": api(REFUSED, "final_insert is longer than 65536 characters",
                                 final_insert=INSERT.replace("'final'", "'" + "a" * BIG + "'")),
    # custom_options: injection and nonsense
    "options-unknown-key": api(REFUSED, "drop_everything", custom_options={"drop_everything": "1"}),
    "options-enormous-key": api(REFUSED, "Extra inputs are not permitted", custom_options={"k" * BIG: "1"}),
    "threads-flag-injection": api(REFUSED, "max_threads_running must be a positive integer",
                                  custom_options={"max_threads_running": "200 --execute"}),
    "threads-negative": api(REFUSED, "max_threads_running must be a positive integer",
                            custom_options={"max_threads_running": "-5"}),
    "threads-zero": api(REFUSED, "max_threads_running must be a positive integer",
                        custom_options={"max_threads_running": "0"}),
    "threads-huge": api(REFUSED, "max_threads_running must be a positive integer",
                        custom_options={"max_threads_running": "99999999999"}),
    "lag-sql-injection": api(REFUSED, "max_replication_lag must be a positive integer",
                             custom_options={"max_replication_lag": "1; DROP TABLE t"}),
    "lag-float": api(REFUSED, "max_replication_lag must be a positive integer",
                     custom_options={"max_replication_lag": 1.5}),
    "recursion-flag-injection": api(REFUSED, "recursion_method must be one of",
                                    custom_options={"recursion_method": "hosts --execute"}),
    "recursion-dsn-elsewhere": api(REFUSED, "recursion_method must be one of",
                                   custom_options={"recursion_method": "dsn=h=evil.example,D=x,t=y"}),
    "recursion-unknown": api(REFUSED, "recursion_method must be one of",
                             custom_options={"recursion_method": "telepathy"}),
    "config-path-relative": api(REFUSED, "config_path must be an absolute file path",
                                custom_options={"config_path": "my.cnf"}),
    "config-path-newline": api(REFUSED, "config_path must be an absolute file path",
                               custom_options={"config_path": "{allowed}/ok.cnf\n--execute"}),
    "config-path-outside": api(REFUSED, "is outside the allowed directories",
                               custom_options={"config_path": "/etc/passwd"}),
    "config-path-dotdot": api(REFUSED, "is outside the allowed directories",
                              custom_options={"config_path": "{allowed}/../../../../../../etc/passwd"}),
    "config-path-symlink-out": api(REFUSED, "is outside the allowed directories",
                                   custom_options={"config_path": "{allowed}/escape.cnf"}),
    "config-path-missing": api(REFUSED, "does not exist", custom_options={"config_path": "{allowed}/nope.cnf"}),
    # the DDL: one plain statement, for this table, in this database
    "ddl-second-statement": raw(REFUSED, "more than one statement",
                                ddl_statement=ALTER + "; DROP TABLE victim"),
    # show never has host (a bare Rails row): the refusal must still reach shift
    "ddl-refused-and-show-lacks-host": raw(REFUSED, "more than one statement",
                                           ddl_statement=ALTER + "; DROP TABLE victim"),
    "ddl-comment-hides-separator": raw(REFUSED, "more than one statement",
                                       ddl_statement=ALTER + " -- \n; DROP TABLE victim"),
    "ddl-block-comment": api(REFUSED, "must not contain comments", ddl=ALTER + " /* DROP TABLE victim */"),
    "ddl-executable-comment": api(REFUSED, "must not contain comments",
                                  ddl=ALTER + " /*!50000 , DROP COLUMN name */"),
    "ddl-hash-comment": api(REFUSED, "must not contain comments", ddl=ALTER + " # harmless?"),
    "ddl-other-table": raw(REFUSED, "changes table 'victim' but the migration is for table 't'",
                           ddl_statement="ALTER TABLE victim ADD COLUMN x INT"),
    "ddl-other-database": raw(REFUSED, "names database 'mysql'", ddl_statement="ALTER TABLE mysql.t ADD COLUMN x INT"),
    "ddl-drop-as-alter": raw(REFUSED, "is a DROP but the migration's action is ALTER", ddl_statement="DROP TABLE t"),
    "ddl-truncate": raw(REFUSED, "must be CREATE TABLE, CREATE VIEW, ALTER TABLE", ddl_statement="TRUNCATE TABLE t"),
    "ddl-delete": raw(REFUSED, "must be CREATE TABLE, CREATE VIEW, ALTER TABLE", ddl_statement="DELETE FROM t"),
    "ddl-grant": raw(REFUSED, "must be CREATE TABLE, CREATE VIEW, ALTER TABLE",
                     ddl_statement="GRANT ALL ON *.* TO t"),
    "ddl-rename-to": api(REFUSED, "RENAME TO changes the table's name", ddl="ALTER TABLE t RENAME TO t2"),
    "ddl-unterminated-string": raw(REFUSED, "unterminated string literal",
                                   ddl_statement="ALTER TABLE t ADD COLUMN x VARCHAR(3) DEFAULT 'a"),
    # the final insert: one INSERT INTO, no ';', no comments
    "insert-second-statement": api(REFUSED, "final_insert must not contain ';'",
                                   final_insert=INSERT + "; DROP TABLE victim"),
    "insert-semicolon-in-string": api(REFUSED, "final_insert must not contain ';'",
                                      final_insert=INSERT.replace("'final'", "'a;b'")),
    "insert-is-update": api(REFUSED, "final_insert must be an INSERT INTO statement",
                            final_insert="UPDATE t SET amount = 0"),
    "insert-is-delete": api(REFUSED, "final_insert must be an INSERT INTO statement", final_insert="DELETE FROM victim"),
    "insert-is-select": api(REFUSED, "final_insert must be an INSERT INTO statement", final_insert="SELECT * FROM t"),
    "insert-is-drop": api(REFUSED, "final_insert must be an INSERT INTO statement", final_insert="DROP TABLE victim"),
    "insert-is-replace": api(REFUSED, "final_insert must be an INSERT INTO statement",
                             final_insert=INSERT.replace("INSERT", "REPLACE")),
    "insert-comment": api(REFUSED, "without comments", final_insert=INSERT + " /* x */"),
    # JSON types the API's store cannot hold, served on the wire
    "database-a-number": proxy(REFUSED, "database must be a string, got 12", changed(database=12)),
    "table-a-list": proxy(REFUSED, "table must be a string", changed(table=["t"])),
    "ddl-an-object": proxy(REFUSED, "ddl_statement must be a string", changed(ddl_statement={"sql": ALTER})),
    "final-insert-a-number": proxy(REFUSED, "final_insert must be a string, got 5", changed(final_insert=5)),
    "port-a-list": proxy(REFUSED, "port must be an integer", changed(port=[3306])),
    "port-a-bool": proxy(REFUSED, "port must be an integer, got True", changed(port=True)),
    "runtype-a-bool": proxy(REFUSED, "runtype must be a numeric code", changed(runtype=True)),
    "options-object-injection": proxy(REFUSED, "max_threads_running must be a positive integer",
                                      changed(custom_options={"max_threads_running": "200 --execute"})),
}

# The refused cases that also run end to end (API, sensor DAG, shift_migration runs), each named with the layer
# that refuses it (see tests/support/hostile_validation.py); every refused case is asserted at that layer directly.
# One per layer and way of staging: what the DAGs add to a refusal (failing it through the API, no run or a
# failed run, no SQL, nothing in the binlog) does not depend on which field or check refused it.
END_TO_END_REFUSED = {
    "database-backtick-injection": CLAIM,  # the model, a field served from the API's store (sqlite)
    "host-dsn-injection": CLAIM,  # the model, a host no registered cluster has (the DSN a pt-osc would take)
    "threads-flag-injection": CLAIM,  # the model's custom_options, created through the API
    "database-a-number": CLAIM,  # the model, a JSON type the store cannot hold (proxy)
    "lock-version-text": CLAIM,  # the model, a lifecycle field served in the unstage answer
    "ddl-refused-and-show-lacks-host": PREPARE,  # checked_ddl's parse; the failure reaches shift without a host
    "ddl-other-database": PREPARE,  # checked_ddl's target check
    "insert-second-statement": PREPARE,  # final_insert.check_shape
    "config-path-symlink-out": PREPARE,  # ptosc.check_runnable (config_path resolved out of the allowed dirs)
}

# Staged entries no real migration stands behind: no usable id, so nothing to claim or fail.
LEFT_ALONE_ENTRIES = {
    "id-text": {"id": "forty", "status": 0, "database": "x", "table": "t", "ddl_statement": ALTER},
    "id-bool": {"id": True, "status": 0, "database": "x", "table": "t", "ddl_statement": ALTER},
    "id-missing": {"status": 0, "database": "x", "table": "t", "ddl_statement": ALTER},
    "id-negative": {"id": -3, "status": 0, "database": "x", "table": "t", "ddl_statement": ALTER},
    "id-float": {"id": 4.5, "status": 0, "database": "x", "table": "t", "ddl_statement": ALTER},
    "entry-a-string": "ALTER TABLE t ADD COLUMN x INT",
    "entry-null": None,
}

# -- the database runs something; nothing may change -------------------------------------
SQL_CASES = {
    # Odd but legal DDL, several oddities to a migration (each still through checked_ddl and the pt-osc dry run):
    # lowercase and odd whitespace, the database named, ';' in a string and in a quoted column, a reserved-word
    # column, a Jinja-looking comment, a trailing ';' (stored directly: the API refuses a ';' inside the DDL)
    "ddl-odd-but-legal": raw(PREPARED, ddl_statement="  alter   table\n `{db}`.t\tadd column x varchar(5) "
                                                     "default ';' COMMENT '{{ 7 * 7 }}', ADD COLUMN `x;y` INT, "
                                                     "add column `select` int;"),
    # created through the API as Rails would take it: a trailing ';', a lowercase INSERT IGNORE final insert
    "trailing-semicolon-insert-ignore-lowercase": api(PREPARED, ddl=ALTER + ";",
                                                      final_insert="insert ignore into t (name, amount, created) "
                                                                   "values ('x', 1, now())"),
    "recursion-none-config-path-allowed": api(PREPARED, custom_options={"recursion_method": "none",
                                                                        "config_path": "{allowed}/ok.cnf"}),
    "config-path-dotdot-inside": api(PREPARED, custom_options={"config_path": "{allowed}/../ptosc-configs/ok.cnf"}),
    # names pt-osc 3.2 never finds: prepared without its dry run, the shift log says to run it short
    "ptosc-table-non-ascii": {**api(PREPARED, "does not find tables whose names hold non-ASCII characters or a "
                                              "quote; approve the migration as a short run instead",
                                    ddl="ALTER TABLE `tábla` ADD COLUMN x INT"), "table": "tábla"},
    "ptosc-table-quote": {**api(PREPARED, "cannot alter table \"it's\"", ddl="ALTER TABLE `it's` ADD COLUMN x INT"),
                          "table": "it's"},
    "id-and-status-as-text-listed": proxy(PREPARED, "", lambda p: changed(id=str(p["id"]), status="preparing")(p)),
    "status-null-listed": proxy(PREPARED, "", changed(status=None)),
    "insert-unknown-column": api(DB_REFUSED, "final_insert fails on the database: (1054, \"Unknown column 'nope'",
                                 final_insert="INSERT INTO t (nope) VALUES (1)"),
    "insert-syntax-error": api(DB_REFUSED, "final_insert fails on the database: (1064",
                               final_insert="INSERT INTO t VALUES"),
    "insert-duplicate-key": api(DB_REFUSED, "Duplicate entry '1' for key 'PRIMARY'",
                                final_insert="INSERT INTO t (id, name, amount, created) VALUES (1, 'd', 1, NOW())"),
    "alter-clause-hides-drop": api(DB_REFUSED, "dry run failed", ddl=ALTER + ", DROP TABLE victim"),
    "alter-unknown-column": api(DB_REFUSED, "dry run failed", ddl="ALTER TABLE t DROP COLUMN nope"),
    "alter-missing-table": api(DB_REFUSED, "dry run failed", ddl="ALTER TABLE ghost ADD COLUMN x INT"),
    "create-existing": api(DB_REFUSED, "a base table of that name already exists", ddl="CREATE TABLE t (id INT)"),
    "create-invalid": api(DB_REFUSED, "ddl_statement fails on the database: (1060, \"Duplicate column name 'id'",
                          ddl="CREATE TABLE n (id INT, id INT)"),
    "drop-missing": api(DB_REFUSED, "cannot drop", ddl="DROP TABLE ghost"),
}

# -- whole lives: identifiers that must work, and final inserts that must land --------------
HEX = uuid.uuid4().hex[:6]
# Several oddities share one migration (a database, a table, a column name), so each still goes through a whole
# life with fewer runs: pt-osc's copy and rename must quote every one of them, a short run the ones pt-osc 3.2
# cannot find.
HOSTILE_64 = "t; DROP TABLE victim my-table ".ljust(64, "x")  # ';', spaces, a hyphen, 64 characters
ODD_SHORT = "tábla 表 it's"  # accented, CJK, a quote, a space: pt-osc 3.2 finds none of them
FULL_LIFE_CASES = {
    # a hyphenated unicode database, a reserved-word table, a reserved-word column
    "database-unicode-table-order-column-select": dict(database=f"dátabase-表-{HEX}", table="order",
                                                       new_column="select"),
    # a hyphenated ascii database, a 64-character table name holding a ';', spaces and a hyphen
    "database-hyphen-table-64-chars-hostile-spaced": dict(database=f"my-db-{HEX}", table=HOSTILE_64),
    # pt-osc 3.2 cannot find this table (see ptosc-* refusals); a short run alters it directly, adds a unicode
    # column, and runs a final insert whose Jinja-looking text must land as written
    "table-accented-cjk-quote-space-column-unicode-jinja-insert-short-run": dict(
        table=ODD_SHORT, runtype="short", new_column="ñame",
        final_insert=f"INSERT INTO `{ODD_SHORT}` (name, amount, created) VALUES ('{{{{ ds }}}} {{% raw %}}', 1, "
                     "'2021-01-01')"),
    "insert-into-other-database": dict(runtype="short", final_insert="INSERT INTO `{other}`.victim (name, amount, "
                                                                       "created) VALUES ('from-t', 1, NOW())"),
}
JINJA_LITERAL = "{{ ds }} {% raw %}"


def _cases() -> list[Case]:
    cases = [Case(id=k, **v) for k, v in {**REFUSED_CASES, **SQL_CASES}.items()]
    cases += [Case(id=k, expect=LEFT_ALONE, via="synthetic") for k in LEFT_ALONE_ENTRIES]
    for key, spec in FULL_LIFE_CASES.items():
        spec = dict(spec)
        table = spec.pop("table", "t")
        column = spec.pop("new_column", "x")
        # The reference API refuses any ';' at create time: such a (legal) name is stored directly.
        cases.append(Case(id=key, expect=FULL_LIFE, table=table, via="sqlite" if ";" in table else "api", database=spec.pop("database", None),
                          runtype=spec.pop("runtype", "long"), new_column=column,
                          fields=dict(ddl=f"ALTER TABLE `{table}` ADD COLUMN `{column}` INT", **spec)))
    return cases


CASES = _cases()


# --------------------------------------------------------------------------------------------


class Corpus:
    """Stages the cases, runs the runner over them phase by phase, and keeps what happened."""

    def __init__(self, root: RootServer, primary, api: ShiftApiServer, upstream: BrokenUpstream,
                 allowed: Path) -> None:
        self.root, self.primary, self.api, self.upstream, self.allowed = root, primary, api, upstream, allowed
        self.trace = RunnerTrace(root)
        self.db: dict[str, str] = {}
        self.mid: dict[str, int] = {}
        self.before: dict[str, Any] = {}
        self.runs: list[tuple[str, dict[str, Any], str]] = []
        self.master_before_refused = self.master_after_refused = None
        self.binlog_start = None
        self.timings: dict[str, float] = {}

    # -- staging ------------------------------------------------------------------------

    def prepare_database(self, case: Case) -> None:
        name = case.database or f"h_{uuid.uuid4().hex[:10]}"
        create_sample_table(self.root, name, case.table, 20)
        create_sample_table(self.root, name, "victim", 5)
        self.db[case.id] = name
        self.before[case.id] = snapshot(self.root, name)

    def _fill(self, value: Any, case: Case) -> Any:
        if isinstance(value, str):
            return (value.replace("{db}", self.db[case.id]).replace("{allowed}", str(self.allowed))
                    .replace("{port}", str(self.primary.port)).replace("{other}", self.db.get("other", "")))
        if isinstance(value, dict):
            return {self._fill(k, case): self._fill(v, case) for k, v in value.items()}
        return value

    def stage(self, case: Case) -> None:
        fields = {k: self._fill(v, case) for k, v in case.fields.items()}
        if case.via == "synthetic":
            self.upstream.extra.append(LEFT_ALONE_ENTRIES[case.id])
            return
        if case.via == "sqlite":
            # A valid row in the API's store; the broken upstream serves the case's fields over it
            # (Rails derives table/host/port only in `staged`, so that is where they are bent).
            served = dict(database=self.db[case.id], table=case.table, ddl_statement=fields.pop("ddl", ALTER))
            served.update(fields)
            if isinstance(served.get("port"), str) and served["port"].isdigit():
                served["port"] = int(served["port"])
            self.mid[case.id] = stage_raw(self.api.db_path, database=self.db[case.id], ddl_statement=ALTER)
            self.upstream.rewrite[self.mid[case.id]] = changed(**served)
            if "lock_version" in served:  # a lifecycle field: the runner reads it from the claim's answer
                self.upstream.rewrite_claim[self.mid[case.id]] = changed(lock_version=served["lock_version"])
            return
        fields.setdefault("database", self.db[case.id])
        fields.setdefault("ddl", ALTER)
        self.mid[case.id] = self.api.create(**fields)["id"]
        if case.via == "proxy":
            self.upstream.rewrite[self.mid[case.id]] = case.rewrite

    # -- running ------------------------------------------------------------------------

    def drain(self, max_passes: int = 120) -> None:
        """Sensor DAG + triggered runs until the (real) API has nothing staged."""
        stuck = 0
        previous = None
        for _ in range(max_passes):
            staged = sorted(m["id"] for m in self.api.request("GET", "migrations/staged").json())
            if not staged and not self.upstream.extra:
                return
            stuck = stuck + 1 if staged == previous else 0
            assert stuck < 3, f"migrations {staged} stay staged pass after pass: the runner leaves them there"
            previous = staged
            self.runs += [(run_id, dict(run.conf), str(run.state)) for run_id, run in claim_and_run()]
        raise AssertionError(f"still staged after {max_passes} passes")

    def prepare_alone(self, case: Case) -> None:
        """Claim the case's migration as the runner does and run only prepare's steps on it (the test DAG
        ``shift_test_prepare``: shift_migration's prepare operators, without the sensor DAG or the rest of
        the run); the run is kept with the others."""
        from shift_provider.hooks.shift_api import ShiftApiHook
        from tests.support.airflow import run_dag

        conf = claim_as_the_runner(ShiftApiHook("shift_api"), self.mid[case.id])
        run = run_dag("shift_test_prepare", conf)
        self.runs.append((run.run_id, dict(run.conf), str(run.state)))

    def human(self, step: str, mid: int, **params) -> None:
        response = self.api.human(step, mid, **params)
        assert response.status_code == 200, response.text

    def runs_for(self, mid: int) -> list[tuple[str, dict[str, Any], str]]:
        return [r for r in self.runs if str(r[1].get("id")) == str(mid)]


PHASE_CASES = {"refused": (REFUSED, LEFT_ALONE), "sql": (PREPARED, DB_REFUSED), "full life": (FULL_LIFE,)}


def cases_of(phase: str, runtype: str | None = None) -> list[Case]:
    """The cases one phase runs end to end; for full lives, those approved with ``runtype`` (long: pt-osc;
    short). Of the refused cases only the sample in ``END_TO_END_REFUSED``."""
    return [case for case in CASES if case.expect in PHASE_CASES[phase]
            and (runtype is None or case.runtype == runtype)
            and (case.expect != REFUSED or case.id in END_TO_END_REFUSED)]


def refused_cases() -> list[Case]:
    """Every refused case: each is asserted at the validation layer (``hostile_validation``)."""
    return [case for case in CASES if case.expect == REFUSED]


@contextlib.contextmanager
def runner_settings(work: Path) -> Iterator[Path]:
    """The runner's settings file for the corpus (SHIFT_CONFIG set while inside); yields the directory
    config_path may name (``{allowed}``: ok.cnf, and escape.cnf, a symlink out of it)."""
    from shift_provider.settings import get_settings

    allowed = work / "ptosc-configs"
    allowed.mkdir()
    (allowed / "ok.cnf").write_text("max-lag=5\ncritical-load=Threads_running=400\n")
    (allowed / "escape.cnf").symlink_to("/etc/passwd")
    settings = {
        "mysql_user": TEST_USER, "mysql_password": TEST_PASSWORD, "log_dir": str(work / "shift-logs"),
        "stop_file_path": str(work / "stop"), "pending_drops_db": "_pending_drops", "enable_trash": True,
        "log_sync_interval": 1, "state_sync_interval": 1, "progress_interval": 1,
        "control_poll_interval": 0.5, "staged_poll_interval": 0.5, "wait_check_interval": 1,
        # Step mode: each step after a human's action is an adoption (as in tests/conftest.py's settings).
        "adopt_staged_after": 2, "allowed_config_dirs": [str(allowed)],
        "prefer_instant_ddl": False,  # pt-osc itself must carry the odd names through copy and rename
    }
    (work / "settings.yaml").write_text(yaml.safe_dump(settings))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHIFT_CONFIG", str(work / "settings.yaml"))
        get_settings()
        yield allowed


@contextlib.contextmanager
def running_corpus(primary, work: Path, phase: str, runtype: str | None = None) -> Iterator[Corpus]:
    """Stage one phase's cases (``cases_of``) on fresh databases, run the runner over them until nothing is
    staged, yield."""
    import time

    stack = contextlib.ExitStack()  # the settings, left when the corpus is (below)
    allowed = stack.enter_context(runner_settings(work))
    try:
        api_server = ShiftApiServer({"primary": (primary.host, primary.port)}).start()
        upstream = BrokenUpstream(api_server.root).start()
    except BaseException:
        stack.close()
        raise
    root = RootServer(primary)
    cases = cases_of(phase, runtype)
    with stack, pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_SHIFT_API", upstream.url)
        c = Corpus(root, primary, api_server, upstream, allowed)
        c.db["other"] = f"other_{uuid.uuid4().hex[:8]}"
        create_sample_table(root, c.db["other"], "victim", 5)
        c.trace.start()
        try:
            started = time.monotonic()
            for case in cases:
                if case.via != "synthetic":
                    c.prepare_database(case)
            c.timings["setup"] = time.monotonic() - started
            started = time.monotonic()
            c.binlog_start = root.master_position()
            if phase == "refused":
                # Everything that must be refused before any SQL; nothing may reach the binlog.
                c.master_before_refused = c.binlog_start
                for case in cases:
                    c.stage(case)
                c.drain()
                c.master_after_refused = root.master_position()
                # The sensor still works: a good migration right after the hostile ones.
                good = Case(id="good-after-hostile", expect=PREPARED)
                c.prepare_database(good)
                c.stage(good)
                c.drain()
            elif phase == "sql":
                # Cases that run SQL (dry runs, rolled-back inserts) but must change nothing. Those the database
                # refuses fail in prepare's own steps: they run there alone (``prepare_alone``), the others
                # through the sensor DAG and shift_migration runs.
                for case in cases:
                    if case.expect == DB_REFUSED:
                        c.stage(case)
                        c.prepare_alone(case)
                for case in cases:
                    if case.expect != DB_REFUSED:
                        c.stage(case)
                c.drain()
            else:
                # Whole lives, through every step a human and the runner take.
                for case in cases:
                    c.stage(case)
                c.drain()
                for case in cases:
                    if c.api.migration(c.mid[case.id])["status"] == 1:  # else its own test says why
                        c.human("approve", c.mid[case.id], runtype=case.runtype)
                        c.human("start", c.mid[case.id])
                c.drain()
                for case in cases:
                    if case.runtype == "long" and c.api.migration(c.mid[case.id])["status"] == 4:
                        c.human("rename", c.mid[case.id])
                c.drain()
            c.timings[phase] = time.monotonic() - started
            print(f"\nhostile corpus ({phase}) timings: {c.timings}")
            yield c
        finally:
            c.trace.stop()
            upstream.stop()
            api_server.stop()
            for name in set(c.db.values()):
                root.execute(f"DROP DATABASE IF EXISTS `{name.replace('`', '``')}`")


def phase_tests(phase: str, runtype: str | None = None):
    """(corpus fixture, parametrized test) for a test module that runs one phase: the module assigns both,
    ``corpus, test_hostile_case = phase_tests(...)``, and pytest collects them there."""
    cases = cases_of(phase, runtype)

    @pytest.fixture(scope="module")
    def corpus(airflow_home, primary, tmp_path_factory):
        with running_corpus(primary, tmp_path_factory.mktemp("hostile"), phase, runtype) as c:
            yield c

    @pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])
    def test_hostile_case(corpus, case):
        check(corpus, case)

    return corpus, test_hostile_case


def check(corpus: Corpus, case: Case) -> None:
    """The case's own outcome (its ``expect``)."""
    {REFUSED: check_refused, LEFT_ALONE: check_left_alone, DB_REFUSED: check_db_refused,
     PREPARED: check_prepared, FULL_LIFE: check_full_life}[case.expect](corpus, case)


def check_refused(corpus: Corpus, case: Case) -> None:
    mid = corpus.mid[case.id]
    migration = corpus.api.migration(mid)
    assert migration["status"] == 10, migration
    assert case.message in (migration["error_message"] or ""), migration["error_message"]
    assert len(migration["error_message"]) <= 2000, "an error message must stay readable"
    assert migration["staged"] is False
    # No SQL: not one statement (not even a connect) from the runner mentions the database.
    name = corpus.db[case.id]
    assert corpus.trace.runner_statements_about(name) == []
    assert corpus.trace.binlog_events_about(corpus.binlog_start, name) == []
    assert snapshot(corpus.root, name) == corpus.before[case.id]
    # Refused at claim time: no run at all; refused by a step: its run failed.
    states = [r[2] for r in corpus.runs_for(mid)]
    assert states == ([] if END_TO_END_REFUSED[case.id] == CLAIM else ["failed"]), states


def check_left_alone(corpus: Corpus, case: Case) -> None:
    entry = LEFT_ALONE_ENTRIES[case.id]
    assert entry in corpus.upstream.served_extra, "the broken upstream never served it"
    assert all(conf != entry for _, conf, _ in corpus.runs), "a run was triggered for an entry without an id"


def check_db_refused(corpus: Corpus, case: Case) -> None:
    mid = corpus.mid[case.id]
    migration = corpus.api.migration(mid)
    assert migration["status"] == 10, migration
    assert case.message in (migration["error_message"] or ""), migration["error_message"]
    assert [r[2] for r in corpus.runs_for(mid)] == ["failed"]
    name = corpus.db[case.id]
    assert snapshot(corpus.root, name) == corpus.before[case.id]
    if "final_insert" in case.fields:
        # The insert ran inside a transaction that was rolled back: nothing reached the binlog.
        assert corpus.trace.binlog_events_about(corpus.binlog_start, name) == []


def check_prepared(corpus: Corpus, case: Case) -> None:
    mid = corpus.mid[case.id]
    migration = corpus.api.migration(mid)
    assert migration["status"] == 1, migration
    assert migration["error_message"] in (None, "")
    assert [r[2] for r in corpus.runs_for(mid)] == ["success"]
    assert int(migration["table_rows_start"]) >= 0 and migration["table_size_start"] is not None
    assert snapshot(corpus.root, corpus.db[case.id]) == corpus.before[case.id], "prepare changed the database"
    if case.message:  # what the shift log file must tell the human
        log = corpus.api.request("GET", "migrations/get_file", params={"migration_id": mid, "file_type": 0})
        assert case.message in log.json()["contents"], log.text


def check_full_life(corpus: Corpus, case: Case) -> None:
    mid = corpus.mid[case.id]
    migration = corpus.api.migration(mid)
    assert migration["status"] == 8, (migration, [r[2] for r in corpus.runs_for(mid)])
    states = [r[2] for r in corpus.runs_for(mid)]
    assert states == ["success"] * (3 if case.runtype == "long" else 2), states
    name, table = corpus.db[case.id], case.table
    before = corpus.before[case.id]
    assert columns_of(corpus.root, name, table) == before[table]["columns"] + [case.new_column]
    assert tables_in(corpus.root, name) == sorted([table, "victim"])
    assert triggers_on(corpus.root, name) == []
    assert snapshot(corpus.root, name)["victim"] == before["victim"]
    rows = before[table]["content"][0] + (1 if "final_insert" in case.fields
                                          and "{other}" not in case.fields["final_insert"] else 0)
    assert content_checksum(corpus.root, name, table)[0] == rows
    if case.id == "insert-into-other-database":
        assert corpus.root.query(f"SELECT COUNT(*) FROM `{corpus.db['other']}`.victim WHERE name = 'from-t'")[0][0] == 1
    if JINJA_LITERAL in case.fields.get("final_insert", ""):  # landed as written, not rendered by Jinja
        names = [r[0] for r in corpus.root.query(f"SELECT name FROM {q(name)}.{q(table)} WHERE amount = 1 AND "
                                                 "created = '2021-01-01'")]
        assert names == [JINJA_LITERAL], names
