"""Claim staged migrations (unstage) and name the shift_migration runs to start.

One run per migration: a migration claimed at preparing (0) starts run ``mig-<id>``,
which then follows it through its life (its own tasks claim the later steps). A
migration staged at a later status that no run claimed (filed before this runner was
deployed, its run deleted, resumed in shift after its run ended) is adopted by a new
run ``mig-<id>-<lock_version>`` (unique per claim) that starts at its current step.

The runner never acts on a migration it did not unstage itself: a stolen claim is
skipped; a malformed payload is claimed, then failed through the API with the
validation message, and the others go on. That includes an id no migration may have
(``-7``, ``0``) when the API answers to it: failed, so it stops being listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import BaseOperator

from shift_provider.contract.codes import Status
from shift_provider.contract.models import Migration, claimed_payload
from shift_provider.contract.staged_ids import addressable_id, log_unaddressable
from shift_provider.contract.state_machine import step_for
from shift_provider.exceptions import MalformedMigrationError, MigrationStepError, ShiftApiError
from shift_provider.run_notes import NOT_YET_APPROVED
from shift_provider.settings import get_settings


def migration_run_id(migration: Migration, lock_version: Any = None) -> str:
    """``mig-<id>`` for the run that starts at preparing; ``mig-<id>-<lock_version>`` for an adopting run."""
    step_for(migration)  # a status no step acts on is refused here, before any run exists
    if migration.status == Status.PREPARING:
        return f"mig-{migration.id}"
    return f"mig-{migration.id}-{lock_version if isinstance(lock_version, int) else 'adopted'}"


def clip(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def run_note(migration: Migration, conf: dict[str, Any], url_template: str) -> str:
    """The run's note (markdown, shown with the run in the grid): what the migration is about."""
    lines = [
        f"**{migration.cluster_name or migration.host}** `{migration.database}.{migration.table}`",
        f"`{clip(migration.ddl_statement, 160)}`",
        f"requested by {conf.get('requestor') or '?'}, "
        + (f"approved by {conf['approved_by']}" if conf.get("approved_by") else NOT_YET_APPROVED),
        f"[shift migration {migration.id}]({url_template.format(id=migration.id)})",
    ]
    if migration.status != Status.PREPARING:
        lines.append(f"adopted at {migration.status.name.lower()} ({int(migration.status)})")
    return "  \n".join(lines)


class ClaimMigrationsOperator(BaseOperator):
    """Unstage each staged migration; return TriggerDagRunOperator kwargs for those we own."""

    # An XComArg is resolved (not Jinja-rendered) and makes the sensor upstream.
    template_fields: Sequence[str] = ("staged",)

    def __init__(self, *, staged: Any, shift_api_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.staged = staged
        self.shift_api_conn_id = shift_api_conn_id

    def execute(self, context: Any) -> list[dict[str, Any]]:
        from shift_provider.hooks.shift_api import ShiftApiHook

        settings = get_settings()
        if settings.stop_requested:
            self.log.warning("stop file %s exists: claiming nothing", settings.stop_file_path)
            return []
        api = ShiftApiHook(self.shift_api_conn_id or settings.api_conn_id, settings=settings)
        runs = []
        for payload in self.staged or []:
            run = self._claim_one(api, payload)
            if run is not None:
                runs.append(run)
        self.log.info("claimed %d migration(s): %s", len(runs), [r["trigger_run_id"] for r in runs])
        return runs

    def _claim_one(self, api, payload: Any) -> dict[str, Any] | None:
        migration_id = addressable_id(payload)
        if migration_id is None:
            log_unaddressable(self.log, [payload], set())
            return None
        try:
            claim = api.unstage(migration_id)
        except ShiftApiError as exc:
            if migration_id > 0:
                raise
            # An id no migration may have, that the API does not answer to either: nobody to tell.
            self.log.error("staged entry with id %r cannot be claimed (%s); left alone", migration_id, exc)
            return None
        if claim.stolen:
            self.log.info("migration %s was claimed by another runner; skipping", migration_id)
            return None
        if isinstance(claim.payload, dict) and claim.payload.get("status") != payload.get("status"):
            self.log.warning("migration %s moved from status %s to %s since it was listed; using the claim's",
                             migration_id, payload.get("status"), claim.payload.get("status"))
        # The target (table, host, port...) exists only in the staged entry; the claim's bare
        # row is newer for the lifecycle (status, staged, lock_version...).
        conf = claimed_payload(payload, claim.payload)
        try:
            migration = Migration.from_payload(conf)
            run_id = migration_run_id(migration, conf.get("lock_version"))
        except (MalformedMigrationError, MigrationStepError) as exc:
            self.log.error("failing migration %s: %s", migration_id, exc)
            api.fail(migration_id, str(exc)[:2000])  # as the steps clip theirs: readable in the shift UI
            return None
        return {"trigger_run_id": run_id, "conf": conf,
                "note": run_note(migration, conf, get_settings().shift_ui_url_template)}


class TriggerMigrationRunOperator(TriggerDagRunOperator):
    """TriggerDagRunOperator that never renders the conf as a template.

    The conf is a user's migration: a ``{{`` in its DDL or final insert must reach
    the database as written, not be evaluated by Jinja.
    """

    template_fields: Sequence[str] = ("trigger_dag_id", "trigger_run_id")
