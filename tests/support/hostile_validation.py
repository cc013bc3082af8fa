"""The runner's refusals before any SQL, called directly: the validation layer the hostile corpus checks.

A ``refused`` case of the hostile corpus is refused before the runner sends its first
statement, by one of two layers, in this order:

* ``claim``: the sensor DAG's claim (``ClaimMigrationsOperator._claim_one``) merges the
  staged entry with the unstage answer (``claimed_payload``), validates the result
  (``Migration.from_payload``: identifiers, host, port, codes, lengths, custom_options)
  and names its run (``migration_run_id``); a refusal fails the migration, no run starts.
* ``prepare``: the first steps of the run (``validate_final_insert``, ``dry_run``)
  check, before their first SQL, that the DDL is one statement for this table in this
  database within the admission rules (``checked_ddl``), that the final insert has the
  right shape (``final_insert.check_shape``), and, for an ALTER pt-osc will run, that
  the pt-osc options can be built (``ptosc.check_runnable``: recursion method,
  config_path's directory). A refusal fails the run and the migration.

``refusal`` calls exactly those functions, in the runner's order, on the payload the
runner builds (``staged_payloads`` stages the cases through the real reference API and
``BrokenUpstream`` and claims them with the runner's own ``ShiftApiHook``); no database
is involved. The end-to-end sample in ``hostile_corpus`` proves, for one case per
layer and staging route, that these decisions are what the DAGs do.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shift_provider import ptosc
from shift_provider.contract.codes import Action
from shift_provider.contract.models import Migration, claimed_payload
from shift_provider.engine.final_insert import check_shape
from shift_provider.exceptions import MalformedMigrationError, MigrationStepError
from shift_provider.hooks.cluster import apply_overrides
from shift_provider.operators.claim import migration_run_id
from shift_provider.operators.prepare import checked_ddl, require_preparing
from shift_provider.settings import Settings
from tests.support.hostile import BrokenUpstream
from tests.support.shift_api import ShiftApiServer

CLAIM, PREPARE = "claim", "prepare"
UNREACHABLE_PORT = 9  # the API's cluster map needs one; nothing here connects to it


def refusal(conf: dict[str, Any], settings: Settings) -> tuple[str, str] | None:
    """(layer, message) of the runner's refusal of the claimed payload ``conf``, or None if it gets past both."""
    try:
        migration = Migration.from_payload(conf)
        migration_run_id(migration, conf.get("lock_version"))
    except (MalformedMigrationError, MigrationStepError) as exc:
        return CLAIM, str(exc)[:2000]  # as the claim clips it for shift
    migration = apply_overrides(migration, settings)  # as the step's load_migration does
    try:
        # validate_final_insert, before its first SQL
        require_preparing(migration)
        parsed = checked_ddl(migration)
        if migration.final_insert_sql is not None:
            check_shape(migration.final_insert_sql)
        # dry_run, before its first SQL (an ALTER pt-osc runs: check_trigger_safety starts with this)
        if (parsed.action == Action.ALTER and not migration.is_short_run
                and not ptosc.unsupported_table(migration)):
            ptosc.check_runnable(migration, settings)
    except MigrationStepError as exc:
        return PREPARE, f"{type(exc).__name__}: {exc}"  # as report_failure words it
    return None


def claim_as_the_runner(hook, mid: int) -> dict[str, Any]:
    """List ``staged`` and unstage migration ``mid`` with the runner's ``ShiftApiHook``: the conf the claim
    hands its run (``claimed_payload``). The migration must be the newest staged (the API lists two)."""
    listed = [entry for entry in hook.staged() if isinstance(entry, dict) and entry.get("id") == mid]
    assert len(listed) == 1, (mid, "not listed in staged")
    claim = hook.unstage(mid)
    assert not claim.stolen, mid
    return claimed_payload(listed[0], claim.payload)


@contextlib.contextmanager
def staged_payloads(corpus_class, cases, work: Path) -> Iterator[dict[str, dict[str, Any]]]:
    """Stage ``cases`` (as ``corpus_class`` stages them: API, SQLite store, proxy) and claim each as the runner
    does: {case id: the payload its run would get}. No database exists behind the names."""
    from shift_provider.hooks.shift_api import ShiftApiHook

    api_server = ShiftApiServer({"primary": ("127.0.0.1", UNREACHABLE_PORT)}).start()
    upstream = BrokenUpstream(api_server.root).start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AIRFLOW_CONN_SHIFT_API", upstream.url)
            corpus = corpus_class(None, _Primary(), api_server, upstream, work / "ptosc-configs")
            hook = ShiftApiHook("shift_api")
            payloads = {}
            for case in cases:  # one at a time: the API lists at most two staged migrations
                corpus.db[case.id] = case.database or f"h_{uuid.uuid4().hex[:10]}"
                corpus.stage(case)
                payloads[case.id] = claim_as_the_runner(hook, corpus.mid[case.id])
            yield payloads
    finally:
        upstream.stop()
        api_server.stop()


class _Primary:
    """What staging reads of the server (the ``{port}`` a case serves)."""

    host, port = "127.0.0.1", UNREACHABLE_PORT
