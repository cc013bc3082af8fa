"""Prefer instant DDL: when the server can change only metadata, copy no rows.

MariaDB 10.3+ / MySQL 8.0+ apply many ALTERs (add a column, rename one, change a
default, widen a VARCHAR) as a metadata change, ``ALGORITHM=INSTANT``: ~0.01 s on a
million rows, where pt-osc takes seconds and leaves triggers on the table meanwhile.

- prepare (``detect``): the ALTER is tried with ``, ALGORITHM=INSTANT`` on a one-row copy
  of the table's definition in the bookkeeping database (never on the live table; the row
  is implicit defaults). Instant only when the server reports 0 rows affected: MariaDB
  10.11 accepts INSTANT for an engine change and copies anyway. An engine change or a
  table option that rebuilds (``REBUILD_HEADS``) is never tried. The answer goes to the
  state file (``instant_ddl``), XCom and the shift log.
- copy (``skip_copy``): an instant-capable ALTER copies nothing; it re-checks on a fresh
  one-row copy (the server or the table may have changed since prepare), sends 100% and
  moves to awaiting rename, so the change still goes live only when a human asks.
- rename (``InstantRename``): the ALTER with ``ALGORITHM=INSTANT`` on the live table,
  within the rename's lock bound and retries. The table's definition hash is saved
  before; a re-run that finds another definition knows the ALTER was applied and does
  not apply it twice. If the server refuses INSTANT at that moment (errors 1845/1846),
  pt-osc copies inline in the rename task (the copy step's own ``CopyRun``) and the
  normal verified swap follows: never a blocking ``ALGORITHM=COPY``.

Off with the setting ``prefer_instant_ddl: false`` or the migration's custom option
``prefer_instant_ddl`` (``"false"``); the custom option wins when set.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from shift_provider.contract.codes import Status
from shift_provider.contract.models import Migration
from shift_provider.contract.state_file import MigrationState, load_state, save_state
from shift_provider.engine import leftovers, rename_steps
from shift_provider.engine.copy_run import CopyRun
from shift_provider.engine.final_insert import BOOKKEEPING_DB
from shift_provider.exceptions import MigrationStepError, PtOscError
from shift_provider.mysql import bounded_ddl, table_definition
from shift_provider.mysql.bounded_ddl import LockBound
from shift_provider.mysql.nondeterministic import nondeterministic_default
from shift_provider.mysql.sql import qualified, quote_ident, specifications
from shift_provider.ptosc import alter_clause
from shift_provider.settings import Settings

ER_ALTER_OPERATION_NOT_SUPPORTED = 1845
ER_ALTER_OPERATION_NOT_SUPPORTED_REASON = 1846
NOT_INSTANT_ERRORS = frozenset({ER_ALTER_OPERATION_NOT_SUPPORTED, ER_ALTER_OPERATION_NOT_SUPPORTED_REASON})

XCOM_INSTANT = "instant_ddl"  # prepare: the verdict (bool)
XCOM_REASON = "instant_ddl_reason"  # prepare: why, in words
XCOM_SECONDS = "instant_ddl_seconds"  # rename: the ALTER's own duration
XCOM_INSTANT_OUTCOME = "instant_ddl_outcome"  # rename: applied | already_applied | fell_back
COPY_STATUS = "instant"  # the state file's copy_status when the copy step copied nothing
SUBSTEP = "instant_alter"  # recorded by the rename as rename.instant_alter
FALLBACK_STEP = "rename.instant_fallback"


@dataclass(frozen=True)
class Verdict:
    instant: bool
    reason: str


# --- when it applies -----------------------------------------------------------------------

def preferred(settings: Settings, migration: Migration) -> tuple[bool, str]:
    """(on?, why): the custom option when set, else the setting."""
    option = migration.custom_options.prefer_instant_ddl
    if option is not None:
        return option, f"the migration's custom option prefer_instant_ddl is {str(option).lower()}"
    return settings.prefer_instant_ddl, f"the setting prefer_instant_ddl is {str(settings.prefer_instant_ddl).lower()}"


# Alterations that rebuild the table whatever ALGORITHM says: MariaDB 10.11 accepts
# ``ENGINE=Aria, ALGORITHM=INSTANT`` and copies the table anyway (rows affected = rows).
REBUILD_HEADS = frozenset({"ENGINE", "STORAGE", "ROW_FORMAT", "KEY_BLOCK_SIZE", "FORCE", "ORDER", "CONVERT",
                           "PAGE_COMPRESSED", "PAGE_COMPRESSION_LEVEL", "ENCRYPTED", "ENCRYPTION_KEY_ID",
                           "CHECKSUM", "PAGE_CHECKSUM", "TRANSACTIONAL", "PARTITION", "REMOVE", "COALESCE",
                           "REORGANIZE", "ANALYZE", "OPTIMIZE", "REBUILD", "REPAIR"})


def unprobeable(clause: str) -> str | None:
    """Why the clause must not be tried with ``, ALGORITHM=INSTANT`` appended (None when it may)."""
    try:
        specs = specifications(clause)
    except ValueError as exc:
        return f"the ALTER clause cannot be parsed ({exc})"
    for spec in specs:
        head = spec[0][1].upper() if spec[0][0] == "word" else ""
        if head in ("ALGORITHM", "LOCK"):
            return f"the ALTER names {head} itself"
        options = [text.upper() for i, (kind, text) in enumerate(spec)
                   if kind == "word" and (i == 0 or spec[i + 1:i + 2] == [("punct", "=")])]
        rebuild = next((word for word in options if word in REBUILD_HEADS), None)
        if rebuild:
            return f"{rebuild} rebuilds the table (a copy of every row), so it is never instant"
    return None


_code = bounded_ddl.error_code
_message = bounded_ddl.error_text


def probe_table(migration: Migration) -> str:
    """A name of this migration's own in the bookkeeping database (the id alone may repeat across deployments)."""
    digest = hashlib.sha1(f"{migration.database}.{migration.table}".encode()).hexdigest()[:10]
    return f"_instant_probe_{migration.id}_{digest}"


def _put_probe_row(cur, scratch: str) -> None:
    """One row of implicit defaults (no user data), so a copying ALTER shows as rows affected > 0."""
    cur.execute("SET @shift_saved_sql_mode = @@SESSION.sql_mode, SESSION sql_mode = ''")
    try:
        cur.execute(f"INSERT INTO {scratch} () VALUES ()")
    finally:
        cur.execute("SET SESSION sql_mode = @shift_saved_sql_mode")


def probe(hook, migration: Migration, clause: str) -> Verdict:
    """Try the ALTER with ALGORITHM=INSTANT on a one-row copy of the table's definition; the live table is untouched.

    The row is made of implicit defaults, not the table's data. Accepting the keyword proves
    nothing (MariaDB 10.11 takes ``ENGINE=Aria, ALGORITHM=INSTANT`` and copies): the verdict is
    instant only when the server reports 0 rows affected.
    """
    scratch = qualified(BOOKKEEPING_DB, probe_table(migration))
    conn = hook.get_conn()
    try:
        conn.autocommit(True)
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(BOOKKEEPING_DB)}")
            cur.execute(f"DROP TABLE IF EXISTS {scratch}")  # one a killed attempt left
            try:
                try:
                    cur.execute(f"CREATE TABLE {scratch} LIKE {qualified(migration.database, migration.table)}")
                    _put_probe_row(cur, scratch)
                    copied = cur.execute(f"ALTER TABLE {scratch} {clause}, ALGORITHM=INSTANT")
                except Exception as exc:
                    code = _code(exc)
                    if bounded_ddl.classify(exc) == bounded_ddl.ErrorKind.CONNECTION:
                        raise  # the connection, not the ALTER: a retry may answer
                    if code in NOT_INSTANT_ERRORS:
                        return Verdict(False, f"the server refuses ALGORITHM=INSTANT for it: {_message(exc)}")
                    return Verdict(False, f"it could not be tried on a one-row copy of the table "
                                          f"(error {code}: {_message(exc)})")
                cur.execute("SELECT VERSION()")
                version = cur.fetchone()[0]
                if copied:
                    # The server's own signal: an in-place change reports 0 rows affected, a copy the rows it copied.
                    return Verdict(False, f"the server accepted ALGORITHM=INSTANT but copied the probe's row "
                                          f"({copied} row(s) affected, {version}): it rebuilds the table")
                return Verdict(True, "ALGORITHM=INSTANT succeeded on a one-row copy of the table's definition with "
                                     f"0 rows affected: no row is copied ({version})")
            finally:
                try:
                    cur.execute(f"DROP TABLE IF EXISTS {scratch}")
                except Exception:  # the connection broke: the next probe drops it first
                    pass
    finally:
        conn.close()


def verdict_for(settings: Settings, hook, migration: Migration) -> Verdict:
    """The whole decision: preference, a clause we may try, then the probe."""
    on, why = preferred(settings, migration)
    if not on:
        return Verdict(False, f"{why}, so detection is skipped")
    clause = alter_clause(migration)
    refused = unprobeable(clause)
    if refused:
        return Verdict(False, f"{refused}, so it is not tried with ALGORITHM=INSTANT")
    varying = nondeterministic_default(clause)
    if varying:
        return Verdict(False, varying)
    return probe(hook, migration, clause)


# --- prepare ------------------------------------------------------------------------------

def detect(op, context: Any, migration: Migration) -> bool:
    """Prepare's verdict: state file, XCom and the shift log say it plainly for the approving DBA."""
    ti = context["ti"]
    if not migration.uses_ptosc:
        op.log.info("not a pt-osc ALTER (short run, CREATE or DROP): instant DDL detection does not apply")
        ti.xcom_push(key=XCOM_INSTANT, value=False)
        ti.xcom_push(key=XCOM_REASON, value="not a pt-osc ALTER")
        return False
    verdict = verdict_for(op.settings, op.cluster(migration), migration)
    state = load_state(op.api, migration.id)
    state.database, state.table = migration.database, migration.table
    state.instant_ddl = verdict.instant
    save_state(op.api, state)
    ti.xcom_push(key=XCOM_INSTANT, value=verdict.instant)
    ti.xcom_push(key=XCOM_REASON, value=verdict.reason)
    if verdict.instant:
        text = ("instant DDL: this ALTER is instant on this server: no rows will be copied (no shadow table, no "
                "triggers); it will be applied with ALGORITHM=INSTANT at rename, when a human asks for it "
                f"({verdict.reason})")
    else:
        text = f"instant DDL: not used for this ALTER ({verdict.reason}); pt-online-schema-change will copy the rows"
    op.tell_shift(migration.id, text)
    return verdict.instant


# --- copy ---------------------------------------------------------------------------------

def skip_copy(op, context: Any, migration: Migration) -> dict[str, Any] | None:
    """The copy step for an instant-capable ALTER: nothing to copy. None when pt-osc must copy."""
    state = load_state(op.api, migration.id)
    if state.instant_ddl is not True:
        return None
    ti = context["ti"]
    current = op.api.get_migration(migration.id)
    if current.status != Status.COPY_IN_PROGRESS:
        op.log.warning("migration %s is now at %s (%d), not copy in progress: nothing to do", migration.id,
                       current.status.name.lower(), current.status)
        ti.xcom_push(key="copy_outcome", value="not_copying")
        return {"outcome": "not_copying"}
    # Another migration's copy on this table would lose this ALTER at its swap: one at a time.
    leftovers.refuse_others(op.cluster(migration), migration.database, migration.table, migration.id)
    verdict = verdict_for(op.settings, op.cluster(migration), migration)  # the server may have changed
    if not verdict.instant:
        state.instant_ddl = False
        save_state(op.api, state)
        op.tell_shift(migration.id, f"instant DDL: prepare found this ALTER instant, but not any more "
                      f"({verdict.reason}); pt-online-schema-change copies the rows")
        return None
    state.database, state.table = migration.database, migration.table
    state.copy_status, state.copy_percentage, state.rows_copied = COPY_STATUS, 100, 0
    save_state(op.api, state)
    op.api.update(migration.id, copy_percentage=100)
    for key, value in (("copy_percentage", 100), ("eta_seconds", 0), ("copy_progress_history", [100]),
                       ("copy_outcome", COPY_STATUS)):
        ti.xcom_push(key=key, value=value)
    op.tell_shift(migration.id, "copy: nothing to copy: this ALTER is instant on this server (checked again "
                  f"now: {verdict.reason}); no shadow table, no triggers. The table is unchanged "
                  "until the rename, which applies the ALTER with ALGORITHM=INSTANT")
    op.report_success(migration)
    return {"outcome": COPY_STATUS}


# --- rename -------------------------------------------------------------------------------

class InstantRefused(Exception):
    """The server refused ALGORITHM=INSTANT on the live table (1845/1846)."""


def at_rename(state: MigrationState) -> bool:
    """The copy copied nothing, or an earlier rename fell back to pt-osc whose copy is not done."""
    return state.copy_status == COPY_STATUS or (state.done(FALLBACK_STEP) and state.copy_status != "succeeded")


def apply_instant(hook, database: str, table: str, clause: str, bound: LockBound, log) -> tuple[float, int]:
    """``ALTER TABLE t <clause>, ALGORITHM=INSTANT`` under the shared lock bound; (its seconds, the attempt)."""
    statement = f"ALTER TABLE {qualified(database, table)} {clause}, ALGORITHM=INSTANT"
    with bounded_ddl.session(hook, bound) as cur:
        started = time.perf_counter()
        try:
            attempt = bounded_ddl.execute(cur, statement, bound, f"the instant ALTER of `{database}`.`{table}`", log,
                                          unchanged="the table is unchanged")
        except bounded_ddl.LockBoundExceeded:
            raise
        except Exception as exc:
            code = _code(exc)
            if code in NOT_INSTANT_ERRORS:
                raise InstantRefused(_message(exc)) from None
            if bounded_ddl.classify(exc) == bounded_ddl.ErrorKind.CONNECTION:
                raise
            raise MigrationStepError(f"the instant ALTER of `{database}`.`{table}` failed: "
                                     f"error {code}: {_message(exc)}") from None
        return time.perf_counter() - started, attempt


class InstantRename:
    """The rename of an instant-capable ALTER: apply it in place, once. The operator finishes the rest."""

    def __init__(self, op, context: Any, migration: Migration, hook, state: MigrationState) -> None:
        self.op, self.ti, self.migration, self.hook, self.state = op, context["ti"], migration, hook, state
        self.context = context
        self.log = op.log

    def run(self) -> dict[str, Any] | None:
        """The result when the ALTER is applied in place; None when pt-osc copied inline and a swap must follow."""
        m, state, settings = self.migration, self.state, self.op.settings
        if state.done(FALLBACK_STEP):
            return self.copy_inline("an earlier attempt of this rename fell back to pt-osc and its copy did not "
                                    "finish; copying again")
        clause = alter_clause(m)
        expected = rename_steps.alter_expectations(clause)
        outcome = "applied"
        seconds: float | None = None
        if state.done(f"rename.{SUBSTEP}"):
            outcome = "already_applied"
            self.log.info("instant ALTER: already applied (state file); not applying it again")
        else:
            # Another migration's copy in flight would swap this change away: refuse, touch nothing.
            leftovers.refuse_others(self.hook, m.database, m.table, m.id)
            now = table_definition.definition_hash(self.hook, m.database, m.table)
            if state.instant_definition_before and now != state.instant_definition_before:
                outcome = "already_applied"
                self.log.info("instant ALTER: the table's definition differs from the one recorded before the "
                              "ALTER: an earlier attempt applied it; not applying it twice")
            else:
                if not state.instant_definition_before:
                    state.instant_definition_before = now  # saved before acting: a re-run compares with it
                    save_state(self.op.api, state)
                try:
                    seconds, attempt = apply_instant(self.hook, m.database, m.table, clause,
                                                     LockBound.of(settings), self.log)
                except InstantRefused as exc:
                    return self.copy_inline(f"the server refused ALGORITHM=INSTANT on the live table now ({exc})")
                self.op.tell_shift(m.id, f"rename: ALTER TABLE `{m.database}`.`{m.table}` {clause}, "
                                   f"ALGORITHM=INSTANT applied in {seconds:.3f}s (attempt {attempt}); "
                                   "no rows copied, no table swapped")
            problems = rename_steps.schema_problems(self.hook, m.database, m.table, expected, None)
            if not expected.may_keep_definition \
                    and table_definition.definition_hash(self.hook, m.database, m.table) == state.instant_definition_before:
                problems.append("its definition is the one recorded before the ALTER: the ALTER is not applied")
            if problems:
                raise MigrationStepError(f"after the instant ALTER, `{m.database}`.`{m.table}` does not have the "
                                         "new schema: " + "; ".join(problems) + "; a human must look")
            self.op.mark_done(SUBSTEP, state)
        self.ti.xcom_push(key=XCOM_INSTANT_OUTCOME, value=outcome)
        if seconds is not None:
            self.ti.xcom_push(key=XCOM_SECONDS, value=round(seconds, 6))
        return {"instant_ddl": True, "outcome": outcome, "instant_ddl_seconds": seconds}

    def copy_inline(self, why: str) -> None:
        """pt-osc copies now, in this task (never a blocking ALGORITHM=COPY); the operator's swap follows."""
        m, state = self.migration, self.state
        state.instant_ddl = False
        state.mark(FALLBACK_STEP)
        save_state(self.op.api, state)
        self.ti.xcom_push(key=XCOM_INSTANT_OUTCOME, value="fell_back")
        self.op.tell_shift(m.id, f"rename: {why}; falling back to pt-online-schema-change: it copies the rows "
                           "now, in the rename task, then the verified swap runs as for any pt-osc ALTER")
        result = InlineCopyRun(self.op, self.context, m).run()
        if result.get("outcome") != "copied":
            raise PtOscError(f"the fallback pt-osc copy did not finish ({result}); clear the rename task to retry")
        return None


class InlineCopyRun(CopyRun):
    """The copy step's pt-osc run, inside the rename task (status 5): no next_step, no offer.

    Everything else is the copy's own: pinned run_host, streamed and shipped output,
    progress, state file, an earlier attempt's leftovers removed first.
    """

    def still_copy_in_progress(self) -> bool:
        current = self.api.get_migration(self.migration.id)
        if current.status != Status.RENAME_IN_PROGRESS:
            raise MigrationStepError(f"migration {self.migration.id} is now at {current.status.name.lower()}, not "
                                     "rename in progress: not starting the fallback pt-osc copy")
        return True

    def conclude_succeeded(self) -> dict[str, Any]:
        triggers = self.verified_leftovers()
        self._percent, self._eta, self._waiting = 100, 0, None
        self.publish_progress(final=True)
        self.state.copy_status = "succeeded"
        self.sync_state(self.api)
        self.note(f"fallback copy done: shadow table `{self.state.new_table}` and triggers {triggers} are in "
                  "place; the rename swaps them in now")
        return {"outcome": "copied", "new_table": self.state.new_table, "triggers": triggers}

    def conclude_stopped(self, reason: str) -> dict[str, Any]:
        self.state.copy_status = "stopped"
        self.record_leftovers()
        self.sync_state(self.api)
        self.note(f"the fallback pt-osc copy stopped ({reason}); clear the rename task to copy again")
        raise PtOscError(f"the fallback pt-osc copy in the rename task stopped: {reason}")
