"""The real ``shift-api-server`` as a subprocess on a free port, with helpers to drive migrations.

Tests play the human with ``human(step, id)`` (or the real ``shift-client``) and the runner
with ``ShiftApiHook``; this module only starts, stops and pokes the server over HTTP.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from tests.support.mariadb import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
SERVER = BIN / "shift-api-server"
CLIENT = BIN / "shift-client"

# Human steps that need the current lock_version.
LOCKED_STEPS = ("approve", "unapprove", "start", "enqueue", "dequeue", "rename", "resume", "delete")


class ShiftApiServer:
    """One ``shift-api-server`` process; ``url`` is the base URL ending in /api/v1/."""

    def __init__(self, clusters: dict[str, tuple[str, int]], db_path: str | Path | None = None,
                 ssl: tuple[str, str, str | None] | None = None) -> None:
        self.clusters = clusters
        self.workdir = Path(tempfile.mkdtemp(prefix="shift-api-"))
        self.db_path = Path(db_path) if db_path else self.workdir / "shift.sqlite3"
        self.ssl = ssl  # (certfile, keyfile, ca or None)
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.session = requests.Session()
        if ssl:
            self.session.verify = ssl[2] or False

    @property
    def root(self) -> str:
        return f"{'https' if self.ssl else 'http'}://127.0.0.1:{self.port}/"

    @property
    def url(self) -> str:
        return self.root + "api/v1/"

    def start(self, timeout: float = 20.0) -> ShiftApiServer:
        args = [str(SERVER), "--host", "127.0.0.1", "--port", str(self.port), "--db", str(self.db_path),
                "--graceful-timeout", "0.5"]
        for name, (host, port) in self.clusters.items():
            args += ["--cluster", f"{name}={host}:{port}"]
        if self.ssl:
            certfile, keyfile, ca = self.ssl
            args += ["--ssl-certfile", certfile, "--ssl-keyfile", keyfile]
            if ca:
                args += ["--ssl-ca-certs", ca]
        self._log = open(self.workdir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"shift-api-server exited {self.process.returncode}: {self.log_tail()}")
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"shift-api-server on port {self.port} did not answer: {self.log_tail()}")

    def _answers(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        if self.ssl and self.ssl[2]:
            return True  # a client certificate is required; the port being open is enough
        try:
            return self.session.get(self.root + "health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log_tail(self) -> str:
        try:
            return (self.workdir / "server.log").read_text()[-3000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> ShiftApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP helpers ----------------------------------------------------------------------

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                params: dict[str, Any] | None = None) -> requests.Response:
        """A raw call (path relative to /api/v1/); values sent as strings like the real clients."""
        payload = None if body is None else {k: "" if v is None else str(v) for k, v in body.items()}
        return self.session.request(method, self.url + path, json=payload, params=params, timeout=10)

    def create(self, ddl: str = "ALTER TABLE t ADD COLUMN c INT", database: str = "db", cluster: str = "primary",
               final_insert: str = "", custom_options: dict | str | None = None, requestor: str = "tests",
               pr_url: str = "https://example.invalid/pr/1") -> dict[str, Any]:
        """Create a migration (status 0, staged) and return it."""
        body = {"cluster_name": cluster, "database": database, "ddl_statement": ddl,
                "final_insert": final_insert, "requestor": requestor, "pr_url": pr_url}
        if custom_options is not None:
            body["custom_options"] = custom_options if isinstance(custom_options, str) else _json(custom_options)
        response = self.request("POST", "migrations", body)
        assert response.status_code == 200, response.text
        return response.json()["migration"]

    def show(self, migration_id: int) -> dict[str, Any]:
        response = self.request("GET", f"migrations/{migration_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def migration(self, migration_id: int) -> dict[str, Any]:
        return self.show(migration_id)["migration"]

    def human(self, step: str, migration_id: int, **params: Any) -> requests.Response:
        """A human step (approve, start, rename, resume, pause, cancel_cli, ...) with the current lock_version."""
        body: dict[str, Any] = {"id": migration_id, **params}
        if step in LOCKED_STEPS and "lock_version" not in params:
            body["lock_version"] = self.migration(migration_id)["lock_version"]
        if step == "approve":
            body.setdefault("runtype", "long")
            body.setdefault("approver", "tests")
        return self.request("POST", f"migrations/{step}", body)

    def machine(self, step: str, migration_id: int, **params: Any) -> dict[str, Any]:
        """A runner call (unstage, next_step, complete, ...) answered 200; returns the JSON."""
        response = self.request("POST", f"migrations/{step}", {"id": migration_id, **params})
        assert response.status_code == 200, response.text
        return response.json()

    def state(self, migration_id: int):
        """The migration's state file (file_type 1) as the runner reads it: a MigrationState."""
        from shift_provider.contract.state_file import MigrationState

        response = self.request("GET", "migrations/get_file", params={"migration_id": migration_id, "file_type": 1})
        return MigrationState.from_yaml(response.json().get("contents") if response.status_code == 200 else None,
                                        migration_id)

    def log_file(self, migration_id: int) -> str:
        """The migration's log file (file_type 0) as the shift UI shows it; "" when there is none."""
        response = self.request("GET", "migrations/get_file", params={"migration_id": migration_id, "file_type": 0})
        return response.json()["contents"] if response.status_code == 200 else ""

    def claim(self, migration_id: int) -> dict[str, Any]:
        """Claim a staged migration as the runner does; the shift_migration conf.

        Rails serves the target (table, host, port, mode, action) only in ``staged``, and
        ``unstage`` answers the bare row: the conf is the listed entry with the claim's
        lifecycle fields, built by the runner's own ``claimed_payload``. The migration must
        be among the 2 entries ``staged`` serves (the most recently updated ones).
        """
        from shift_provider.contract.models import claimed_payload

        listed = [m for m in self.request("GET", "migrations/staged").json() if m.get("id") == migration_id]
        assert listed, f"migration {migration_id} is not among the staged migrations served"
        claimed = self.machine("unstage", migration_id)
        assert claimed.get("id") == migration_id, claimed
        return claimed_payload(listed[0], claimed)

    def drive_to_start(self, migration_id: int, runtype: str = "long") -> dict[str, Any]:
        """Play both sides from 0 staged to 3 copy in progress, staged (what a runner then picks up)."""
        self.machine("unstage", migration_id)
        self.machine("next_step", migration_id)
        for step, extra in (("approve", {"runtype": runtype}), ("start", {})):
            response = self.human(step, migration_id, **extra)
            assert response.status_code == 200, response.text
        return self.migration(migration_id)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def shift_client(*args: str, url: str | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run the real ``shift-client`` (from .venv/bin) and capture its output."""
    argv = [str(CLIENT)]
    if url:
        argv += ["--url", url]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=30, check=check)
