"""ShiftApiHook: the runner's side of the shift API, one method per endpoint.

Connection (``shift_api`` by default; any of these forms works):

* URI: ``AIRFLOW_CONN_SHIFT_API='http://shift.example:3000/api/v1/'`` - the URI path is the
  base path (Airflow stores it in ``schema``); ``https://...?cert=/c.pem&key=/k.pem&ca=/ca.pem``
  adds mutual TLS.
* JSON with an explicit base URL: ``{"conn_type": "shift_api", "extra": {"base_url":
  "https://shift.example/api/v1/", "cert": ..., "key": ..., "ca": ...}}`` (``base_url`` wins).
* JSON in HttpHook style: ``{"conn_type": "http", "host": "shift.example", "port": 3000,
  "schema": "https", "extra": {"path": "api/v1/"}}`` (``path`` defaults to ``api/v1/``).

When the connection does not exist, the runner settings file is used (``rest_api``,
``rest_cert``, ``rest_key``, ``rest_ca``) so an existing Go-runner YAML keeps working.
Extra keys other than ours and HttpHook's (verify, proxies, ...) become request headers,
as with HttpHook.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import requests
import tenacity
from airflow.providers.http.hooks.http import HttpHook
from requests import Request, Response, Session

from shift_provider.contract.codes import FileType
from shift_provider.exceptions import ShiftApiError

try:  # the Task SDK raises its own class; older code paths raise the core one
    from airflow.sdk.exceptions import AirflowNotFoundException as _SdkNotFound
except ImportError:  # pragma: no cover
    _SdkNotFound = LookupError
try:
    from airflow.exceptions import AirflowNotFoundException as _CoreNotFound
except ImportError:  # pragma: no cover
    _CoreNotFound = _SdkNotFound

DEFAULT_PATH = "api/v1/"
# Failures after which the request may or may not have been processed: retried for
# idempotent calls, re-checked for unstage.
RETRYABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class _ServerError(Exception):
    """A 5xx answer: retryable, and the request may have been processed."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status_code}: {response.text[:300]}")
        self.status_code = response.status_code


_RETRY_ON = (*RETRYABLE, _ServerError)
LONGEST_PAUSE = 30.0  # seconds between two attempts, at the most


@dataclass(frozen=True)
class RetryBound:
    """How long a call keeps trying: at most ``attempts`` tries within ``seconds``, pausing
    ``delay`` after the first failure and twice as long after each next one (at most 30 s).

    The one backoff of the hook: ordinary calls and the unstage's re-checked retries share it.
    """

    attempts: int = 5
    delay: float = 1.0
    seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("retry_limit is the number of attempts and must be at least 1")

    def pause_after(self, attempt: int) -> float:
        return min(self.delay * 2 ** (attempt - 1), max(self.delay, LONGEST_PAUSE))

    def gives_up(self, attempt: int, elapsed: float) -> bool:
        """After failed try ``attempt``, ``elapsed`` seconds in: another try would break the bound."""
        return attempt >= self.attempts or elapsed + self.pause_after(attempt) >= self.seconds

    def __str__(self) -> str:
        return f"{self.attempts} attempts, {self.seconds:g}s"


@dataclass(frozen=True)
class Claim:
    """What unstage won: the migration payload, or ``stolen`` (another runner has it, or nobody knows)."""

    stolen: bool
    payload: dict[str, Any] | None = None
    uncertain: bool = False  # stolen after an ambiguous failure: it may be orphaned and need a human


def _strings(values: dict[str, Any]) -> dict[str, str]:
    """The shift API expects every JSON value as a string (Rails params)."""
    out = {}
    for key, value in values.items():
        if value is None:
            out[key] = ""
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out


def resolve_base_url(connection: Any) -> str:
    """The base URL (ending in ``/``) from any of the documented connection forms."""
    extra = connection.extra_dejson or {}
    base = extra.get("base_url")
    if not base:
        host = (connection.host or "").strip()
        schema = (connection.schema or "").strip()
        conn_type = (connection.conn_type or "").lower()
        schema_is_scheme = schema.lower() in ("http", "https")
        path = extra.get("path") or (schema if schema and not schema_is_scheme else DEFAULT_PATH)
        if "://" in host:
            parsed = urlparse(host)
            base = host
            if connection.port and parsed.port is None:
                base = f"{parsed.scheme}://{parsed.netloc}:{connection.port}{parsed.path}"
            if urlparse(base).path in ("", "/"):
                base = base.rstrip("/") + "/" + path.lstrip("/")
        else:
            if not host:
                raise ShiftApiError(f"shift API connection {connection.conn_id!r} has no host and no base_url")
            scheme = schema.lower() if schema_is_scheme else (conn_type if conn_type in ("http", "https") else "http")
            netloc = f"{host}:{connection.port}" if connection.port else host
            base = f"{scheme}://{netloc}/{path.lstrip('/')}"
    if urlparse(base).scheme not in ("http", "https"):
        raise ShiftApiError(f"shift API base URL must be http(s)://..., got {base!r}")
    return base if base.endswith("/") else base + "/"


class ShiftApiHook(HttpHook):
    """Talk to the shift API with bounded retries; every method returns plain dicts."""

    conn_name_attr = "shift_api_conn_id"
    default_conn_name = "shift_api"
    conn_type = "shift_api"
    hook_name = "Shift API"

    def __init__(
        self,
        shift_api_conn_id: str = default_conn_name,
        *,
        retry_limit: int = 5,
        retry_delay: float = 1.0,
        max_retry_seconds: float = 60.0,
        timeout: float = 30.0,
        settings: Any = None,
    ) -> None:
        super().__init__(method="GET", http_conn_id=shift_api_conn_id)
        self.retry = RetryBound(retry_limit, retry_delay, max_retry_seconds)
        self.shift_api_conn_id = shift_api_conn_id
        self.timeout = timeout
        self._settings = settings
        self._session: Session | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {"schema": "Base path or scheme"},
            "placeholders": {
                "host": "shift.example.com",
                "schema": "api/v1/",
                "extra": '{"base_url": "https://shift.example.com/api/v1/", "cert": "/path/client.pem", '
                '"key": "/path/client.key", "ca": "/path/ca.pem"}',
            },
        }

    # -- connection ------------------------------------------------------------------------

    def get_connection(self, conn_id: str | None) -> Any:  # type: ignore[override]
        """The Airflow connection, else one built from the runner settings file."""
        try:
            return super().get_connection(conn_id)
        except (_SdkNotFound, _CoreNotFound):
            return self._connection_from_settings(conn_id)

    def _connection_from_settings(self, conn_id: str | None) -> Any:
        from airflow.sdk import Connection

        settings = self._settings
        if settings is None:
            from shift_provider.settings import get_settings

            settings = get_settings()
        self.log.info("No Airflow connection %r; using rest_api=%s from the settings file", conn_id, settings.rest_api)
        extra = {"base_url": settings.rest_api}
        for key, attr in (("cert", "rest_cert"), ("key", "rest_key"), ("ca", "rest_ca")):
            if getattr(settings, attr, ""):
                extra[key] = getattr(settings, attr)
        return Connection(conn_id=conn_id or self.default_conn_name, conn_type="shift_api", extra=json.dumps(extra))

    def _set_base_url(self, connection: Any) -> None:
        self.base_url = resolve_base_url(connection)
        self._srv_lookup_enabled = False
        self._base_url_initialized = True

    def _configure_session_from_extra(self, session: Session, connection: Any, extra_options: dict[str, Any]) -> Session:
        """HttpHook's handling, minus our own keys (which must not become headers), plus mTLS."""
        extra = dict(connection.extra_dejson or {})
        cert, key, ca = extra.pop("cert", None), extra.pop("key", None), extra.pop("ca", None)
        for ours in ("base_url", "path"):
            extra.pop(ours, None)
        shim = SimpleNamespace(extra_dejson=extra, host=connection.host)
        session = super()._configure_session_from_extra(session, shim, extra_options)
        if cert:
            session.cert = (cert, key) if key else cert
        if ca:
            session.verify = ca
        return session

    def _get_session(self) -> Session:
        if self._session is None:
            self._session = self.get_conn()
        return self._session

    # -- transport -------------------------------------------------------------------------

    def _send_once(self, method: str, endpoint: str, params: dict | None, body: dict | None) -> Response:
        """One HTTP exchange; raises a RETRYABLE error or _ServerError for a 5xx."""
        session = self._get_session()
        url = self.url_from_endpoint(endpoint)
        request = Request(method, url, params=params if method == "GET" else None,
                          json=_strings(body) if body is not None else None)
        response = self.run_and_check(session, session.prepare_request(request),
                                      {"timeout": self.timeout, "check_response": False})
        if response.status_code >= 500:
            raise _ServerError(response)
        return response

    def _describe(self, name: str, method: str, endpoint: str) -> str:
        return f"shift API call {name} ({method} {self.base_url or ''}{endpoint})"

    def _send(self, name: str, method: str, endpoint: str, *, params: dict | None = None,
              body: dict | None = None) -> Response:
        """Send with exponential backoff on connection errors, timeouts and 5xx; never on 4xx."""
        started = time.monotonic()
        retrying = tenacity.Retrying(
            stop=lambda state: self.retry.gives_up(state.attempt_number, state.seconds_since_start or 0.0),
            wait=lambda state: self.retry.pause_after(state.attempt_number),
            # a TLS failure (bad certificate, untrusted server) will not heal by retrying
            retry=tenacity.retry_if_exception(
                lambda exc: isinstance(exc, _RETRY_ON) and not isinstance(exc, requests.exceptions.SSLError)),
            before_sleep=lambda state: self.log.warning(
                "%s failed (attempt %d): %s; retrying", self._describe(name, method, endpoint),
                state.attempt_number, state.outcome.exception(),
            ),
            reraise=True,
        )
        try:
            return retrying(self._send_once, method, endpoint, params, body)
        except _RETRY_ON as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise ShiftApiError(
                f"{self._describe(name, method, endpoint)} gave up after {attempts} attempt(s) in "
                f"{time.monotonic() - started:.1f}s (bound: {self.retry}): {exc}",
                status_code=getattr(exc, "status_code", None),
            ) from exc
        except (requests.RequestException, OSError) as exc:  # bad URL, unreadable cert file, ...
            raise ShiftApiError(f"{self._describe(name, method, endpoint)} failed: {exc}") from exc

    def _json(self, name: str, method: str, endpoint: str, response: Response) -> Any:
        """Decode a 2xx answer; a 4xx raises ShiftApiError carrying the API's errors."""
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            errors: list[str] = []
            if isinstance(data, dict):
                raw = data.get("errors")
                errors = [str(e) for e in raw] if isinstance(raw, list) else ([str(raw)] if raw else [])
                if not errors and data.get("message"):
                    errors = [str(data["message"])]
            detail = "; ".join(errors) or response.text[:300] or response.reason
            exc = ShiftApiError(f"{self._describe(name, method, endpoint)} answered "
                                f"{response.status_code}: {detail}", status_code=response.status_code)
            exc.errors = errors  # type: ignore[attr-defined]
            raise exc
        if data is None and response.content.strip() not in (b"null",):
            raise ShiftApiError(f"{self._describe(name, method, endpoint)} answered "
                                f"{response.status_code} with non-JSON: {response.text[:200]!r}",
                                status_code=response.status_code)
        return data

    def _call(self, name: str, method: str, endpoint: str, *, params: dict | None = None,
              body: dict | None = None) -> Any:
        response = self._send(name, method, endpoint, params=params, body=body)
        return self._json(name, method, endpoint, response)

    def _post(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(name, "POST", f"migrations/{name}", body=body)

    # -- runner endpoints ------------------------------------------------------------------

    def staged(self) -> list[dict[str, Any]]:
        """Raw staged payloads; the caller validates each so one bad migration fails alone."""
        data = self._call("staged", "GET", "migrations/staged")
        if not isinstance(data, list):
            raise ShiftApiError(f"shift API call staged answered {type(data).__name__}, not a list")
        return data

    def show(self, migration_id: int | str) -> dict[str, Any]:
        """``{"migration": {...}, "available_actions": [...]}``; 404 raises ShiftApiError."""
        return self._call("show", "GET", f"migrations/{migration_id}")

    def get_migration(self, migration_id: int | str):
        """Where the migration is in its life now, from ``show`` (a MigrationLifecycle).

        ``show`` answers the bare Rails row, without table/host/port: the target of a
        step always comes from the claimed ``staged`` entry, never from here.
        """
        from shift_provider.contract.models import MigrationLifecycle

        return MigrationLifecycle.from_answer(self.show(migration_id).get("migration"))

    def unstage(self, migration_id: int | str) -> Claim:
        """Claim a staged migration; never a blind retry.

        After an ambiguous failure (timeout, reset, 5xx) the server may have unstaged it for
        us. Re-read it: still staged -> nobody claimed it, try again; not staged -> we cannot
        tell who has it, so report stolen rather than risk two runners acting on it.
        """
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send_once("POST", "migrations/unstage", None, {"id": migration_id})
            except _RETRY_ON as exc:
                failure: Exception = exc
            else:
                payload = self._json("unstage", "POST", "migrations/unstage", response)
                if isinstance(payload, dict) and payload.get("id") is not None:
                    return Claim(stolen=False, payload=payload)
                return Claim(stolen=True)
            self.log.warning("unstage of migration %s failed ambiguously (%s); re-reading it", migration_id, failure)
            current = (self.show(migration_id) or {}).get("migration") or {}
            if not current.get("staged"):
                self.log.warning(
                    "migration %s is no longer staged after an ambiguous unstage: another runner or our lost "
                    "request claimed it. Treating it as stolen; if no runner acts on it, it needs a human.",
                    migration_id,
                )
                return Claim(stolen=True, uncertain=True)
            elapsed = time.monotonic() - started
            if self.retry.gives_up(attempt, elapsed):
                raise ShiftApiError(
                    f"shift API call unstage (POST {self.base_url}migrations/unstage) for migration {migration_id} "
                    f"gave up after {attempt} attempt(s) in {elapsed:.1f}s; it is still staged: {failure}",
                    status_code=getattr(failure, "status_code", None),
                ) from failure
            time.sleep(self.retry.pause_after(attempt))

    def next_step(self, migration_id: int | str) -> dict[str, Any]:
        """status + 1; the server only moves an unstaged machine status, so a retry cannot skip two."""
        return self._post("next_step", {"id": migration_id})

    def update(self, migration_id: int | str, **fields: Any) -> dict[str, Any]:
        """PUT stats, copy_percentage, run_host, work_directory (sent as strings)."""
        return self._call("update", "PUT", f"migrations/{migration_id}", body=fields)

    def complete(self, migration_id: int | str) -> dict[str, Any]:
        return self._post("complete", {"id": migration_id})

    def cancel(self, migration_id: int | str) -> dict[str, Any]:
        return self._post("cancel", {"id": migration_id})

    def resume(self, migration_id: int | str, lock_version: int | None) -> dict[str, Any]:
        """The human endpoint a cleared copy at error (13) uses: back to copy in progress (3), staged.

        Only when a DBA clears the failed copy task in Airflow (that is the human act); the
        current lock_version makes it refuse when someone else moved the migration meanwhile.
        """
        return self._post("resume", {"id": migration_id, "lock_version": lock_version})

    def fail(self, migration_id: int | str, error_message: str) -> dict[str, Any]:
        """Terminal failure (10)."""
        return self._post("fail", {"id": migration_id, "error_message": error_message})

    def error(self, migration_id: int | str, error_message: str) -> dict[str, Any]:
        """Resumable error (13), only from copy in progress."""
        return self._post("error", {"id": migration_id, "error_message": error_message})

    def offer(self, migration_id: int | str) -> dict[str, Any]:
        """Hand a running copy back (re-stage it) so another runner can take it."""
        return self._post("offer", {"id": migration_id})

    def unpin_run_host(self, migration_id: int | str) -> dict[str, Any]:
        return self._post("unpin_run_host", {"id": migration_id})

    def append_to_file(self, migration_id: int | str, contents: str) -> dict[str, Any]:
        """Append to the log file the shift UI shows."""
        return self._post("append_to_file", {"migration_id": migration_id, "file_type": int(FileType.LOG),
                                             "contents": contents})

    def write_file(self, migration_id: int | str, contents: str) -> dict[str, Any]:
        """Overwrite the state file (new table name, triggers) a restart needs."""
        return self._post("write_file", {"migration_id": migration_id, "file_type": int(FileType.STATE),
                                         "contents": contents})

    def get_file(self, migration_id: int | str, file_type: int | FileType) -> str | None:
        """The file's contents, or None when the API has none (404 "File not found")."""
        params = _strings({"migration_id": migration_id, "file_type": int(file_type)})
        response = self._send("get_file", "GET", "migrations/get_file", params=params)
        if response.status_code == 404:
            try:
                message = response.json().get("message")
            except (ValueError, AttributeError):
                message = None
            if message == "File not found":
                return None
        data = self._json("get_file", "GET", "migrations/get_file", response)
        if isinstance(data, dict):
            contents = data.get("contents")
            return None if contents is None else str(contents)
        raise ShiftApiError(f"shift API call get_file answered {type(data).__name__}, not an object")

    def test_connection(self) -> tuple[bool, str]:
        try:
            count = len(self.staged())
        except Exception as exc:  # the UI shows the message
            return False, str(exc)
        return True, f"shift API at {self.base_url} answered ({count} staged)"
