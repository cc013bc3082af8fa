"""Pick the branch of shift_migration for the claimed status (the state machine's table)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from airflow.providers.standard.operators.branch import BaseBranchOperator

from shift_provider.exceptions import MalformedMigrationError, MigrationStepError
from shift_provider.links import ShiftMigrationLink
from shift_provider.models import Migration
from shift_provider.state_machine import Step, step_for

REJECT_TASK = "reject"
ANY_CLUSTER = "any_cluster"


def cluster_task_id(cluster_name: str | None, clusters: Sequence[str]) -> str:
    """The copy task for a cluster: its own when configured, else the shared one."""
    if cluster_name and cluster_name in clusters:
        return "on_" + re.sub(r"[^A-Za-z0-9_.-]", "_", cluster_name)
    return ANY_CLUSTER


class RouteMigrationOperator(BaseBranchOperator):
    """Branches to the first task of the step the migration's status calls for."""

    template_fields: Sequence[str] = ("migration",)
    # The first task a DBA opens in a run: it links to the migration like every step does.
    operator_extra_links = (ShiftMigrationLink(),)

    def __init__(self, *, migration: Any = "{{ dag_run.conf | tojson }}", clusters: Sequence[str] = (),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.migration = migration
        self.clusters = list(clusters)

    def choose_branch(self, context: Any) -> str:
        payload = json.loads(self.migration) if isinstance(self.migration, str) else self.migration
        migration_id = payload.get("id") if isinstance(payload, dict) else None
        if isinstance(migration_id, int) and not isinstance(migration_id, bool):  # the link needs only the id
            context["ti"].xcom_push(key="migration_id", value=migration_id)
        try:
            migration = Migration.from_payload(payload)
            step = step_for(migration)
        except (MalformedMigrationError, MigrationStepError) as exc:
            self.log.error("cannot route this migration: %s", exc)
            return REJECT_TASK
        first_task = {
            Step.PREPARE: "prepare.validate_final_insert",
            Step.COPY: f"copy.{cluster_task_id(migration.cluster_name, self.clusters)}",
            Step.RUN_DDL: "run_ddl",
            Step.RENAME: "rename",
            Step.PAUSE: "pause",
            Step.CANCEL: "cancel",
        }[step]
        self.log.info("migration %s at status %s -> %s", migration.id, migration.status.name.lower(), first_task)
        return first_task
