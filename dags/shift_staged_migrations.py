"""shift_staged_migrations: claim each new staged migration and start its one shift_migration run."""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import DAG

from shift_provider.operators.claim import ClaimMigrationsOperator, TriggerMigrationRunOperator
from shift_provider.sensors.staged import StagedMigrationsSensor

with DAG(
    dag_id="shift_staged_migrations",
    # A new run starts as soon as the last one ends; one at a time, so two runs
    # never race for the same migration (and the API's unstage guards that too).
    schedule="@continuous",
    # A start date in the past: without one, @continuous gives its first run a
    # zero-length interval and the second run collides with it (Airflow 3.3).
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    max_active_runs=1,
    catchup=False,
    tags=["shift"],
    doc_md=__doc__ + """
1. `wait_for_staged` (deferrable): waits on the triggerer for `migrations/staged` to list
   a new migration (preparing), or one staged at a later status that no run claimed for
   `adopt_staged_after` seconds. The poll is shared with every waiting run of the
   triggerer: one request per `staged_poll_interval`. Nothing is claimed while the stop
   file exists. An entry without a usable id is logged once and does not wake it.
2. `claim`: unstages each. Stolen ones (another runner or run won) are skipped;
   malformed ones (an id of -7 or 0 included) are failed through the API with the
   validation message.
3. `trigger_migration`: one `shift_migration` run per claim: `mig-<id>` for a new
   migration, `mig-<id>-<lock_version>` for an adopted one; conf = the migration as
   the API listed it, note = cluster, table, DDL, requestor/approver, shift link.
""",
) as dag:
    staged = StagedMigrationsSensor(task_id="wait_for_staged")
    claimed = ClaimMigrationsOperator(task_id="claim", staged=staged.output)
    TriggerMigrationRunOperator.partial(
        task_id="trigger_migration", trigger_dag_id="shift_migration", skip_when_already_exists=True, retries=3,
    ).expand_kwargs(claimed.output)
