"""The staged migration as the shift API sends it, validated into one typed model.

Everything a step needs is read from here, so a malformed payload is refused in
one place with one clear error, before anything touches a database.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from shift_provider.contract.codes import Action, Mode, RunType, Status
from shift_provider.exceptions import MalformedMigrationError

MAX_IDENTIFIER_LENGTH = 64
MAX_STATEMENT_LENGTH = 64 * 1024


# pt-osc's own recursion methods; anything else is refused before pt-osc sees it.
RECURSION_METHODS = frozenset({"processlist", "hosts", "none"})


class CustomOptions(BaseModel):
    """Per-migration pt-osc knobs; the shift defaults apply when a key is missing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_threads_running: int = 200
    max_replication_lag: int = 1
    config_path: str | None = None
    recursion_method: str | None = None
    prefer_instant_ddl: bool | None = None

    @field_validator("max_threads_running", "max_replication_lag", mode="before")
    @classmethod
    def _positive_integer_string(cls, value: Any, info) -> int:
        text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
        if text is None or not text.isdigit() or int(text) <= 0 or int(text) > 1_000_000:
            raise ValueError(f"{info.field_name} must be a positive integer, got {value!r}")
        return int(text)

    @field_validator("config_path")
    @classmethod
    def _plain_path(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if "\x00" in value or "\n" in value or not value.startswith("/"):
            raise ValueError(f"config_path must be an absolute file path, got {value!r}")
        return value

    @field_validator("recursion_method")
    @classmethod
    def _known_recursion_method(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        # pt-osc also accepts dsn=DSN; only D=db,t=table: the DSN table on the migration's own
        # server. An h/P/S/u/p/F key would make pt-osc log in elsewhere with the runner's login.
        if value in RECURSION_METHODS:
            return value
        if value.startswith("dsn=") and _is_own_cluster_dsn(value[4:]):
            return value
        raise ValueError(
            f"recursion_method must be one of {sorted(RECURSION_METHODS)} or dsn=D=db,t=table (a DSN table on the "
            f"migration's own cluster: no h, P, S, u, p or F), got {value!r}"
        )

    @classmethod
    def parse(cls, raw: Any) -> CustomOptions:
        """Parse the API's JSON string (or null/missing) into options."""
        if raw is None or raw == "":
            return cls()
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"custom_options is not valid JSON: {exc.msg}") from None
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError(f"custom_options must be a JSON object, got {type(raw).__name__}")
        return cls.model_validate(raw)


def _is_own_cluster_dsn(dsn: str) -> bool:
    """Exactly ``D=<name>,t=<name>`` (either order): nothing that names a host, port, socket or login."""
    parts = dsn.split(",")
    keys = sorted(p[:2] for p in parts)
    return keys == ["D=", "t="] and all(p[2:] and p[2:].replace("_", "").isalnum() and p[2:].isascii()
                                        for p in parts)


def _check_identifier(kind: str, value: str) -> str:
    if value == "":
        raise ValueError(f"{kind} is empty")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise ValueError(f"{kind} is longer than {MAX_IDENTIFIER_LENGTH} characters: {value[:80]!r}")
    if "\x00" in value or "`" in value:
        raise ValueError(f"{kind} contains a NUL or backtick, which cannot be quoted safely: {value!r}")
    if value != value.strip() or value.endswith(" "):
        raise ValueError(f"{kind} has leading or trailing spaces: {value!r}")
    if value in (".", "..") or "/" in value or "\\" in value:
        raise ValueError(f"{kind} contains a path character: {value!r}")
    return value


# What every answer of the shift API says about where a migration is in its life.
# Rails derives the target (table, host, port, mode, action) only in ``staged``; every
# other answer is the bare row, so after the claim only these fields are read again.
LIFECYCLE_FIELDS = ("status", "staged", "lock_version", "run_host", "copy_percentage", "error_message")
DERIVED_FIELDS = ("table", "host", "port", "mode", "action")


def _strict_integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    text = str(value).strip()
    if not text.lstrip("-").isdigit():
        raise ValueError(f"{name} must be an integer, got {value!r}")
    number = int(text)
    if number < 0 or (name == "id" and number == 0):
        raise ValueError(f"{name} must be positive, got {value!r}")
    return number


def _strict_code_value(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise ValueError(f"{name} must be a numeric code, got {value!r}")
    return int(str(value).strip())


class _MigrationRow(BaseModel):
    """The fields every answer about a migration carries, and the checks of those and of both models' texts."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    status: Status
    staged: bool | None = None
    lock_version: int | None = None
    run_host: str | None = None
    copy_percentage: float | None = None

    @field_validator("id", "lock_version", mode="before", check_fields=False)
    @classmethod
    def _lifecycle_int(cls, value: Any, info) -> Any:
        if value is None and info.field_name == "lock_version":
            return None
        return _strict_integer(value, info.field_name)

    @field_validator("status", mode="before", check_fields=False)
    @classmethod
    def _lifecycle_status(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("status is missing")
        return _strict_code_value(value, "status")

    @field_validator("run_host", "error_message", "cluster_name", mode="before", check_fields=False)
    @classmethod
    def _optional_text(cls, value: Any, info) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{info.field_name} must be a string or null, got {value!r}")
        return value


class MigrationLifecycle(_MigrationRow):
    """A migration as ``show`` and the runner's POSTs answer it: the bare Rails row.

    It has no table, host or port (Rails adds those only to ``staged``), so it is read
    for the lifecycle fields alone: status, staged, lock_version, run_host,
    copy_percentage, error_message.
    """

    error_message: str | None = None

    @classmethod
    def from_answer(cls, row: Any) -> MigrationLifecycle:
        """Validate a bare row from any answer; every problem is one MalformedMigrationError."""
        return _validated(cls, row, "malformed answer for migration", "shift answered {type}, not a migration row")


def claimed_payload(listed: dict[str, Any], claimed: dict[str, Any]) -> dict[str, Any]:
    """The migration a claim acts on: its target from ``staged``, its lifecycle from the claim.

    ``listed`` is the entry of ``staged`` (the only answer with table, host, port, mode,
    action, and the runtype Rails decided); ``claimed`` is unstage's bare row, newer for
    the lifecycle fields. A field the claim does not carry keeps its listed value.
    """
    merged = dict(listed)
    if isinstance(claimed, dict):
        merged.update({name: claimed[name] for name in LIFECYCLE_FIELDS if name in claimed})
    return merged


class Migration(_MigrationRow):
    """One staged migration (target and lifecycle); types are strict enough that later steps never re-check."""

    database: str
    table: str
    ddl_statement: str
    final_insert: str | None = None
    host: str
    port: int
    runtype: RunType | None = None
    mode: Mode | None = None
    action: Action | None = None
    custom_options: CustomOptions = CustomOptions()
    cluster_name: str | None = None

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> int:
        number = _strict_integer(value, "port")
        if not 0 < number < 65536:
            raise ValueError(f"port must be between 1 and 65535, got {value!r}")
        return number

    @field_validator("runtype", "mode", "action", mode="before")
    @classmethod
    def _optional_code(cls, value: Any, info) -> Any:
        return None if value is None else _strict_code_value(value, info.field_name)

    @field_validator("database", "table", mode="before")
    @classmethod
    def _identifier(cls, value: Any, info) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{info.field_name} must be a string, got {value!r}")
        return _check_identifier(info.field_name, value)

    @field_validator("host", mode="before")
    @classmethod
    def _hostname(cls, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ValueError(f"host must be a non-empty string, got {value!r}")
        if len(value) > 255 or not all(c.isalnum() or c in ".-_:[]" for c in value):
            raise ValueError(f"host is not a valid host name: {value[:80]!r}")
        return value

    @field_validator("ddl_statement", "final_insert", mode="before")
    @classmethod
    def _statement(cls, value: Any, info) -> Any:
        if value is None and info.field_name == "final_insert":
            return None
        if not isinstance(value, str):
            raise ValueError(f"{info.field_name} must be a string, got {value!r}")
        if info.field_name == "ddl_statement" and not value.strip():
            raise ValueError("ddl_statement is empty")
        if len(value) > MAX_STATEMENT_LENGTH:
            raise ValueError(f"{info.field_name} is longer than {MAX_STATEMENT_LENGTH} characters")
        if "\x00" in value:
            raise ValueError(f"{info.field_name} contains a NUL byte")
        return value

    @field_validator("custom_options", mode="before")
    @classmethod
    def _custom_options(cls, value: Any) -> CustomOptions:
        if isinstance(value, CustomOptions):
            return value
        try:
            return CustomOptions.parse(value)
        except ValidationError as exc:
            raise ValueError("custom_options: " + _first_error(exc)) from None

    @model_validator(mode="after")
    def _step_fields_present(self) -> Migration:
        # Pause and cancel payloads may lack runtype/mode/action; the others need them.
        if self.status in (Status.PREPARING, Status.COPY_IN_PROGRESS, Status.RENAME_IN_PROGRESS):
            for name in ("runtype", "mode", "action"):
                if getattr(self, name) is None:
                    raise ValueError(f"{name} is missing for a migration at status {self.status.name.lower()}")
        return self

    @property
    def final_insert_sql(self) -> str | None:
        """The final insert, or None when there is none to run."""
        if self.final_insert is None or not self.final_insert.strip():
            return None
        return self.final_insert.strip()

    @property
    def is_short_run(self) -> bool:
        return self.runtype == RunType.SHORT

    @property
    def uses_ptosc(self) -> bool:
        """ALTERs that are not short runs copy rows with pt-osc."""
        return self.action == Action.ALTER and not self.is_short_run

    @classmethod
    def from_payload(cls, payload: Any) -> Migration:
        """Validate an API payload; every problem becomes one MalformedMigrationError."""
        return _validated(cls, payload, "malformed migration", "migration payload must be a JSON object, got {type}")

    def to_payload(self) -> dict[str, Any]:
        """The JSON shape the API uses (custom_options back to its JSON string)."""
        data = self.model_dump(mode="json")
        data["custom_options"] = json.dumps(
            {k: (str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
             for k, v in self.custom_options.model_dump(exclude_none=True).items()}
        )
        return data


def _validated(model: type[BaseModel], data: Any, malformed: str, not_an_object: str) -> Any:
    """``model`` validated from ``data``; every problem is one MalformedMigrationError naming the id."""
    if not isinstance(data, dict):
        raise MalformedMigrationError(not_an_object.format(type=type(data).__name__))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MalformedMigrationError(f"{malformed} {data.get('id')!r}: {_first_error(exc)}",
                                      migration_id=data.get("id")) from None


def _first_error(exc: ValidationError) -> str:
    messages = []
    for err in exc.errors():
        # A location is a payload key: clip it, or a 70 KiB key becomes a 70 KiB error message.
        loc = ".".join(str(p) if len(str(p)) <= 80 else str(p)[:80] + "..." for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = f"{loc} is missing"
        elif loc and not msg.startswith(loc.split(".")[-1]):
            msg = f"{loc}: {msg}"
        messages.append(msg)
    return "; ".join(messages)
