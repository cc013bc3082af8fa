"""Runner settings: one YAML per environment, under the Go runner's own key names.

An existing shift runner YAML loads unchanged; keys of ours sit beside them.
Secrets in Airflow connections (``shift_api``, ``shift_mysql``) win over the file.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shift_provider.exceptions import SettingsError

ENVIRONMENTS = ("development", "staging", "production")
_PATH_KEYS = (
    "mysql_cert", "mysql_key", "mysql_rootCA", "mysql_defaults_file", "rest_cert", "rest_key",
    "log_dir", "pt_osc_path", "stop_file_path",
)


class Settings(BaseModel):
    """Validated runner settings; unknown keys are refused so a typo cannot go unnoticed."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # The Go runner's keys.
    mysql_user: str = "root"
    mysql_password: str = Field(default="", repr=False)
    mysql_cert: str = ""
    mysql_key: str = ""
    mysql_rootCA: str = ""
    mysql_defaults_file: str = ""
    rest_api: str = "http://localhost:3000/api/v1/"
    rest_cert: str = ""
    rest_key: str = ""
    log_dir: str = "/tmp/shift"
    pt_osc_path: str = "pt-online-schema-change"
    enable_trash: bool = True
    pending_drops_db: str = "_pending_drops"
    log_sync_interval: int = Field(default=10, ge=1)
    state_sync_interval: int = Field(default=10, ge=1)
    stop_file_path: str = ""
    host_override: str = ""
    port_override: int = Field(default=0, ge=0, le=65535)
    database_override: str = ""

    # Ours.
    rest_ca: str = ""
    api_conn_id: str = "shift_api"
    mysql_conn_id: str = "shift_mysql"
    shift_ui_url_template: str = "http://localhost:3000/migrations/{id}"
    staged_poll_interval: float = Field(default=5.0, gt=0)
    progress_interval: int = Field(default=5, ge=1)
    control_poll_interval: float = Field(default=2.0, gt=0)
    # A run's human waits: each reads its own migration this often (besides the shared `staged` poll),
    # to notice what `staged` never lists (deleted, failed); and gives up after this many days.
    wait_check_interval: float = Field(default=300.0, gt=0)
    wait_timeout_days: float = Field(default=30.0, gt=0)
    # A migration staged at a later status (3, 5, 9, 11) that no waiting run claimed for this long
    # is adopted by a new run (`mig-<id>-<lock_version>`).
    adopt_staged_after: float = Field(default=30.0, ge=0)
    clusters: list[str] = Field(default_factory=list)  # the clusters copies run on (documentation; the pool caps copies)
    copy_pool: str = "shift_copy"  # the global cap on copies running at once
    allowed_config_dirs: list[str] = Field(default_factory=lambda: ["/etc/shift/pt-osc"])
    prefer_instant_ddl: bool = True  # metadata-only ALTERs skip the copy (ALGORITHM=INSTANT at rename); see instant_ddl
    allow_foreign_keys: bool = False  # pt-osc ALTERs of child tables allowed (parents never); see foreign_keys
    rename_lock_wait_timeout: int = Field(default=3, ge=1)
    rename_retries: int = Field(default=5, ge=0)
    checksum_chunk_seconds: float = Field(default=0.5, gt=0)  # the copy's checksum: target time per chunk
    checksum_at_rename: bool = False  # also checksum the whole table again right before the swap
    ptosc_extra_args: list[str] = Field(default_factory=list)
    mysql_connect_timeout: int = Field(default=10, ge=1)
    mysql_read_timeout: int = Field(default=3600, ge=1)  # longer than any statement a step runs

    @field_validator("rest_api")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value if value.endswith("/") else value + "/"

    @field_validator("pending_drops_db", "database_override")
    @classmethod
    def _database_name(cls, value: str) -> str:
        if len(value) > 64 or "`" in value or "\x00" in value:
            raise ValueError(f"not a usable database name: {value!r}")
        return value

    @property
    def stop_requested(self) -> bool:
        """The Go runner's stop file: while it exists, claim nothing and hand copies back."""
        return bool(self.stop_file_path) and os.path.exists(self.stop_file_path)

    def migration_log_dir(self, migration_id: int) -> Path:
        return Path(self.log_dir) / f"id-{migration_id}"


def _expand_hostname(data: dict[str, Any]) -> dict[str, Any]:
    hostname = socket.gethostname()
    for key in _PATH_KEYS:
        if isinstance(data.get(key), str):
            data[key] = data[key].replace("%hostname%", hostname)
    return data


def default_config_dir() -> Path:
    """SHIFT_CONFIG_DIR, else the project's ``config/`` beside ``plugins/``."""
    if os.environ.get("SHIFT_CONFIG_DIR"):
        return Path(os.environ["SHIFT_CONFIG_DIR"])
    return Path(__file__).resolve().parents[2] / "config"


def settings_path() -> Path:
    """SHIFT_CONFIG names a file outright; otherwise ENVIRONMENT picks one per environment."""
    if os.environ.get("SHIFT_CONFIG"):
        return Path(os.environ["SHIFT_CONFIG"])
    environment = os.environ.get("ENVIRONMENT", "development") or "development"
    if environment not in ENVIRONMENTS:
        raise SettingsError(f"ENVIRONMENT must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}")
    return default_config_dir() / f"{environment}.yaml"


def load_settings_file(path: Path) -> Settings:
    """Read and validate one settings file; errors name the file and the key."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise SettingsError(f"settings file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"settings file {path} must hold a mapping of keys, got {type(raw).__name__}")
    try:
        return Settings.model_validate(_expand_hostname(dict(raw)))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        )
        raise SettingsError(f"settings file {path}: {problems}") from None


@lru_cache(maxsize=8)
def _cached(path: str, mtime: float) -> Settings:
    return load_settings_file(Path(path))


def get_settings() -> Settings:
    """The settings in force, re-read when the file changes."""
    path = settings_path()
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        raise SettingsError(f"settings file {path} does not exist") from None
    return _cached(str(path), mtime)
