"""The shift state machine as the runner sees it: which step each status calls for.

One table, read top to bottom, like gh-ost's migrator: a machine status maps to
the step that handles it, the API call that ends it well, and the call that
reports its failure. Human statuses map to nothing: the runner never moves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from shift_provider.contract.codes import Action, Status
from shift_provider.contract.models import Migration
from shift_provider.exceptions import MigrationStepError


class Step(str, Enum):
    """The runner's steps. The first four name the shift_migration DAG's tasks (``prepare`` its task group);
    a pause or a cancel is finished by whichever task of the run claims it (the copy, a human wait)."""

    PREPARE = "prepare"
    COPY = "copy"
    RUN_DDL = "run_ddl"  # short runs, CREATE and DROP: the DDL runs directly
    RENAME = "rename"
    PAUSE = "pause"
    CANCEL = "cancel"


class Outcome(str, Enum):
    """The shift API call that ends a step."""

    NEXT_STEP = "next_step"
    COMPLETE = "complete"
    FAIL = "fail"
    ERROR = "error"  # resumable by a human; only from copy in progress
    NONE = "none"


@dataclass(frozen=True)
class StepRule:
    step: Step
    on_success: Outcome
    on_failure: Outcome


# status -> (step, success call, failure call). The claim refuses a status with no rule
# (step_for); a step that ends well calls on_success (ShiftMigrationOperator.report_success),
# a failed one reports with on_failure (ShiftMigrationOperator.report_failure).
RULES: dict[tuple[Status, str], StepRule] = {
    # 0: validate, dry run, stats, then awaiting approval (1).
    (Status.PREPARING, "any"): StepRule(Step.PREPARE, Outcome.NEXT_STEP, Outcome.FAIL),
    # 3, ALTER by pt-osc: copy rows, stop before the swap, then awaiting rename (4).
    (Status.COPY_IN_PROGRESS, "ptosc"): StepRule(Step.COPY, Outcome.NEXT_STEP, Outcome.ERROR),
    # 3, short run / CREATE / DROP: the DDL directly, the final insert, completed (8).
    (Status.COPY_IN_PROGRESS, "direct"): StepRule(Step.RUN_DDL, Outcome.COMPLETE, Outcome.FAIL),
    # 5: swap the tables, clean up, final insert, completed (8).
    (Status.RENAME_IN_PROGRESS, "any"): StepRule(Step.RENAME, Outcome.COMPLETE, Outcome.FAIL),
    # 11: stop the copy, keep its state, paused (12).
    (Status.PAUSING, "any"): StepRule(Step.PAUSE, Outcome.NEXT_STEP, Outcome.FAIL),
    # 9: stop the copy, remove triggers and shadow table; canceled is already terminal.
    (Status.CANCELED, "any"): StepRule(Step.CANCEL, Outcome.NONE, Outcome.FAIL),
}


def copy_kind(migration: Migration) -> str:
    """pt-osc for long ALTERs; the DDL directly for short runs, CREATE and DROP."""
    return "ptosc" if migration.action == Action.ALTER and not migration.is_short_run else "direct"


def rule_for(migration: Migration) -> StepRule:
    """The rule for a claimed migration; a human status is refused."""
    kind = copy_kind(migration) if migration.status == Status.COPY_IN_PROGRESS else "any"
    rule = RULES.get((migration.status, kind))
    if rule is None:
        raise MigrationStepError(
            f"migration {migration.id} is at status {migration.status.name.lower()} ({int(migration.status)}), "
            "which a human moves, not the runner"
        )
    return rule


def step_for(migration: Migration) -> Step:
    return rule_for(migration).step
