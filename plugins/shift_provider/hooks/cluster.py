"""Access to a migration's MySQL cluster, on the MySQL provider's MySqlHook.

Where the migration runs (host, port, database) comes from the migration after
the settings' overrides; who connects comes from the ``shift_mysql`` Airflow
connection when it exists, else from the settings file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from airflow.providers.mysql.hooks.mysql import MySqlHook
from airflow.sdk import Connection

from shift_provider.contract.models import Migration
from shift_provider.settings import Settings


@dataclass(frozen=True)
class Credentials:
    """Who the runner is on a cluster; never logged, never put in argv or XCom."""

    user: str
    password: str
    ssl_ca: str = ""
    ssl_cert: str = ""
    ssl_key: str = ""

    def __repr__(self) -> str:  # keep the password out of any log line
        return f"Credentials(user={self.user!r}, password=***)"

    @property
    def ssl(self) -> dict[str, str]:
        return {k: v for k, v in (("ca", self.ssl_ca), ("cert", self.ssl_cert), ("key", self.ssl_key)) if v}


def resolve_credentials(settings: Settings) -> Credentials:
    """The ``shift_mysql`` connection wins over the settings file, as documented."""
    try:
        conn = MySqlHook.get_connection(settings.mysql_conn_id)
    except Exception:  # not defined: AirflowNotFoundException, or no Airflow context at all
        conn = None
    if conn is not None and conn.login:
        ssl = conn.extra_dejson.get("ssl") or {}
        if isinstance(ssl, str):
            ssl = json.loads(ssl)
        return Credentials(conn.login, conn.password or "", ssl.get("ca", ""), ssl.get("cert", ""), ssl.get("key", ""))
    return Credentials(settings.mysql_user, settings.mysql_password, settings.mysql_rootCA,
                       settings.mysql_cert, settings.mysql_key)


def apply_overrides(migration: Migration, settings: Settings) -> Migration:
    """Host/port/database overrides (staging) applied in this one place."""
    changes = {}
    if settings.host_override:
        changes["host"] = settings.host_override
    if settings.port_override:
        changes["port"] = settings.port_override
    if settings.database_override:
        changes["database"] = settings.database_override
    return migration.model_copy(update=changes) if changes else migration


class ShiftClusterHook(MySqlHook):
    """A MySqlHook aimed at one migration's cluster, with the runner's credentials."""

    conn_name_attr = "mysql_conn_id"
    default_conn_name = "shift_mysql"
    conn_type = "mysql"
    hook_name = "Shift cluster"

    def __init__(self, migration: Migration, settings: Settings, *, credentials: Credentials | None = None,
                 database: str | None = None, **kwargs) -> None:
        self.migration = migration
        self.settings = settings
        self.credentials = credentials or resolve_credentials(settings)
        extra = {"charset": "utf8mb4"}
        if self.credentials.ssl:
            extra["ssl"] = self.credentials.ssl
        connection = Connection(
            conn_id=settings.mysql_conn_id, conn_type="mysql", host=migration.host, port=migration.port,
            login=self.credentials.user, password=self.credentials.password,
            schema=migration.database if database is None else database, extra=json.dumps(extra),
        )
        kwargs.setdefault("log_sql", False)
        super().__init__(mysql_conn_id=settings.mysql_conn_id, connection=connection, **kwargs)

    def _run_command(self, cur, sql_statement, parameters):
        """One log line per statement, with its effect, instead of DbApiHook's bare "Rows affected: N"."""
        from shift_provider.mysql.statement_log import execute

        execute(cur, sql_statement, parameters, log=self.log)

    def _get_conn_config_mysql_client(self, conn) -> dict:
        # Bounded waits: a cluster that restarted or vanished must fail a step, not hang it.
        config = super()._get_conn_config_mysql_client(conn)
        config["connect_timeout"] = self.settings.mysql_connect_timeout
        config["read_timeout"] = self.settings.mysql_read_timeout
        config["write_timeout"] = self.settings.mysql_read_timeout
        return config

    @contextlib.contextmanager
    def defaults_file(self) -> Iterator[Path]:
        """A 0600 client option file for pt-osc, so no password ever reaches argv.

        The settings' ``mysql_defaults_file`` is used as is when no ``shift_mysql``
        connection overrides it; otherwise a private temporary file is written and
        removed afterwards.
        """
        if self.settings.mysql_defaults_file and self.credentials.password == self.settings.mysql_password \
                and self.credentials.user == self.settings.mysql_user:
            yield Path(self.settings.mysql_defaults_file)
            return
        directory = Path(tempfile.mkdtemp(prefix="shift-ptosc-"))
        path = directory / "client.cnf"
        lines = ["[client]", f"user={_cnf_value(self.credentials.user)}",
                 f"password={_cnf_value(self.credentials.password)}"]
        for key, value in (("ssl-ca", self.credentials.ssl_ca), ("ssl-cert", self.credentials.ssl_cert),
                           ("ssl-key", self.credentials.ssl_key)):
            if value:
                lines.append(f"{key}={_cnf_value(value)}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write("\n".join(lines) + "\n")
            yield path
        finally:
            path.unlink(missing_ok=True)
            directory.rmdir()


def _cnf_value(value: str) -> str:
    """Quote an option-file value so spaces, '#' and quotes survive."""
    if "\n" in value:
        raise ValueError("a credential must not contain a newline")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
