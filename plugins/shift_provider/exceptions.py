"""Typed errors, so each step can tell a bad migration from a broken tool or server.

Plain Python (no Airflow import): the engine raises them; the operators decide what each
means to Airflow (``operators.base``: permanent errors fail without retry).
"""

from __future__ import annotations


class ShiftError(Exception):
    """Base of every shift provider error."""


class MalformedMigrationError(ShiftError, ValueError):
    """The payload the API sent cannot be acted on safely; the migration must be failed."""

    def __init__(self, message: str, migration_id: object = None) -> None:
        super().__init__(message)
        self.migration_id = migration_id


class SettingsError(ShiftError, ValueError):
    """The runner settings file is missing or invalid."""


class ShiftApiError(ShiftError):
    """The shift API answered with an error or could not be reached within the retry bound."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class MigrationStepError(ShiftError):
    """A step found the migration or the database in a state it must not act on."""


class PtOscError(ShiftError):
    """pt-online-schema-change failed; the message is the tool's own."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class CopyKilled(BaseException):
    """The copy's task was killed (mark failed, a worker's shutdown): pt-osc stopped, the migration offered back.

    A BaseException, as Airflow's own ``AirflowTaskTerminated`` that the operator turns it into:
    no step's error handling may take it for a failure to report to shift.
    """
