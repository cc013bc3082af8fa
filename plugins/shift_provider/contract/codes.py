"""The shift API's numeric codes as named enums (no Airflow import: the reference API uses them too)."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """Migration statuses, as numbered by the shift API."""

    PREPARING = 0
    AWAITING_APPROVAL = 1
    AWAITING_START = 2
    COPY_IN_PROGRESS = 3
    AWAITING_RENAME = 4
    RENAME_IN_PROGRESS = 5
    COMPLETED = 8
    CANCELED = 9
    FAILED = 10
    PAUSING = 11
    PAUSED = 12
    ERROR = 13
    ENQUEUED = 14


MACHINE_STATUSES = frozenset(
    {Status.PREPARING, Status.COPY_IN_PROGRESS, Status.RENAME_IN_PROGRESS, Status.CANCELED, Status.PAUSING}
)


class RunType(IntEnum):
    UNDECIDED = 0
    LONG = 1
    SHORT = 2
    MAYBE_SHORT = 3
    NOCHECKALTER = 4
    MAYBE_NOCHECKALTER = 5


class Mode(IntEnum):
    TABLE = 0
    VIEW = 1


# information_schema.TABLES.TABLE_TYPE of what each mode's DDL creates or changes.
TABLE_TYPES = {Mode.TABLE: "BASE TABLE", Mode.VIEW: "VIEW"}


class Action(IntEnum):
    CREATE = 0
    DROP = 1
    ALTER = 2


class FileType(IntEnum):
    LOG = 0
    STATE = 1
