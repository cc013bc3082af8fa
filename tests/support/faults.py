"""Fault-injection helpers: a real HTTP proxy in front of the shift API, and process killing.

``FaultProxy`` listens on loopback and forwards every request to the reference API,
unless a fault is in force: it then answers 500 without forwarding, or stalls (holds the
request, forwards nothing, and drops the connection without an answer when the stall
ends). A stall can be limited to requests whose body contains a marker, or to the n-th
request from now (``hold_nth``), so a test can freeze the runner at an exact point (e.g.
the state-file write that records a sub-step) and kill it there.
Nothing the runner sends is altered: a request either reaches the API whole or not at all.

``StepForker`` runs steps (``dag.test()`` runs) in forked children of a helper process that
imported Airflow once: task processes a test can SIGKILL many times without paying for a
new interpreter and Airflow start-up per kill.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import psutil

from tests.support.mariadb import free_port
from tests.support.polling import wait_for

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class FaultProxy:
    """A forwarding HTTP proxy with switchable faults; ``url`` is its /api/v1/ base URL."""

    def __init__(self, upstream_root: str) -> None:
        parsed = urlparse(upstream_root)
        self.upstream = (parsed.hostname, parsed.port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._error_until = 0.0
        self._stall_until = 0.0
        self._hold_marker: bytes | None = None
        self._hold_countdown = 0  # >0: hold the request that brings it to 0
        self._released = threading.Event()
        self.held = threading.Event()  # set when a request matching the hold marker arrived
        self.answered_500 = 0
        self.stalled = 0
        self.forwarded = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/"

    # -- faults ----------------------------------------------------------------------------

    def outage(self, error_seconds: float, stall_seconds: float) -> float:
        """500s for ``error_seconds``, then stalls for ``stall_seconds``; returns the end (monotonic)."""
        now = time.monotonic()
        with self._lock:
            self._error_until = now + error_seconds
            self._stall_until = now + error_seconds + stall_seconds
        return self._stall_until

    def hold(self, marker: str) -> None:
        """Stall (until ``release()``) every request whose body contains ``marker``."""
        with self._lock:
            self._hold_marker = marker.encode()
            self._released.clear()
            self.held.clear()

    def hold_nth(self, n: int) -> None:
        """Stall (until ``release()``) the ``n``-th request from now, whatever it is."""
        with self._lock:
            self._hold_marker = None
            self._hold_countdown = int(n)
            self._released.clear()
            self.held.clear()

    def release(self) -> None:
        with self._lock:
            self._hold_marker = None
            self._hold_countdown = 0
        self._released.set()

    def _fault_for(self, body: bytes) -> str | None:
        now = time.monotonic()
        with self._lock:
            if self._hold_marker is not None and self._hold_marker in body:
                return "hold"
            if self._hold_countdown > 0:
                self._hold_countdown -= 1
                if self._hold_countdown == 0:
                    self._hold_marker = b""  # this one and every later request stall until release()
                    return "hold"
            if now < self._error_until:
                return "500"
            if now < self._stall_until:
                return "stall"
        return None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._fault_for(body)
                if fault == "500":
                    proxy.answered_500 += 1
                    payload = b'{"errors": ["injected fault: internal server error"]}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(payload)
                    self.close_connection = True
                    return
                if fault in ("stall", "hold"):
                    proxy.stalled += 1
                    if fault == "hold":
                        proxy.held.set()
                        proxy._released.wait(600)
                    else:
                        while time.monotonic() < proxy._stall_until:
                            time.sleep(0.1)
                    self.close_connection = True  # no answer at all: the client sees a dropped connection
                    return
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                proxy.forwarded += 1
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_HEADERS:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self.release()
        with self._lock:
            self._error_until = self._stall_until = 0.0
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def ptosc_processes(root_pid: int | None = None) -> list[psutil.Process]:
    """Live pt-osc processes (under ``root_pid`` when given)."""
    if root_pid is not None:
        try:
            candidates = psutil.Process(root_pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
    else:
        candidates = list(psutil.process_iter())
    found = []
    for proc in candidates:
        try:
            if "pt-online-schema-change" in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def kill_group(process) -> None:
    """SIGKILL a spawned process's whole group (it was started with start_new_session) and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)



class StepForker:
    """Runs steps (``dag.test()`` runs) in forked children of one long-lived helper process.

    The helper (``forker_main``) imports Airflow and the DAGs once, on its own copy of the
    metadata DB, and stays single-threaded: a fork from it is safe (a fork of the test
    process, with its server and writer threads, can deadlock on a lock one of them
    held), and a child skips the interpreter start-up and imports ``airflow dags test``
    pays. Its ``dag.test()`` still does a few seconds of cold work (SQLAlchemy's statement
    cache, the in-process execution API): a helper that ran one first and then forked
    hung its children, its API thread being gone in them. Each child is its own process
    group, like a task process: ``kill`` is a SIGKILL of it, with no ``on_kill`` and no
    ``finally``. Children run one at a time.
    """

    def __init__(self, workdir) -> None:
        import subprocess
        import sys
        from pathlib import Path

        from tests.support.airflow import private_airflow_env

        self.workdir = Path(workdir)
        env = private_airflow_env(self.workdir / "airflow")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tests.support.faults import forker_main; forker_main()"],
            cwd=Path(__file__).resolve().parents[2], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(self.workdir / "forker.log", "wb"), text=True, start_new_session=True)  # noqa: SIM115
        assert self.process.stdout.readline().strip() == "ready", (self.workdir / "forker.log").read_text()[-3000:]
        self.runs = 0

    def start(self, dag_id: str, conf: dict, mark_success_pattern: str | None = None) -> ForkedRun:
        """Fork one ``dag.test()`` run; ``mark_success_pattern`` as ``run_dag``'s (e.g. the human waits)."""
        import json

        workdir = self.workdir / f"run-{self.runs}"
        workdir.mkdir(parents=True)
        self.runs += 1
        request = {"dag_id": dag_id, "conf": conf, "workdir": str(workdir), "mark_success_pattern": mark_success_pattern}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return ForkedRun(int(self.process.stdout.readline()), workdir)

    def stop(self) -> None:
        kill_group(self.process)


class ForkedRun:
    """One forked step: ``alive()``, ``kill()`` (SIGKILL of its group), ``returncode`` once it ended."""

    def __init__(self, pid: int, workdir) -> None:
        self.pid, self.workdir = pid, workdir
        self.log_path = workdir / "run.log"

    @property
    def returncode(self) -> int | None:
        path = self.workdir / "exit"
        return int(path.read_text()) if path.exists() and path.read_text() else None

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)  # the forker reaps its children at once (SIGCHLD ignored)
        except ProcessLookupError:
            return False
        return True

    def wait(self, timeout: float = 60) -> int | None:
        wait_for(lambda: not self.alive(), timeout, f"forked step {self.pid} to end")
        return self.returncode

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait(30)


def forker_main() -> None:
    """The ``StepForker`` helper: reads one JSON request a line, forks a child per request, prints its pid."""
    import json
    import sys

    answers = os.fdopen(os.dup(1), "w")  # the protocol's own channel; logs go to stderr
    os.dup2(2, 1)
    from tests.support.airflow import dag_bag, run_dag

    dag_bag()  # imports every DAG and operator once, before any fork
    from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI

    InProcessExecutionAPI().app  # dag.test()'s in-process API: seconds of imports, paid once (starts no thread)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    print("ready", file=answers, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setsid()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the step waits for its own children (pt-osc)
                out = os.open(os.path.join(request["workdir"], "run.log"), os.O_WRONLY | os.O_CREAT, 0o600)
                os.dup2(out, 1)
                os.dup2(out, 2)
                run_dag(request["dag_id"], request["conf"], request.get("mark_success_pattern"))
                code = 0
            except BaseException:  # noqa: BLE001 - in run.log; the exit file says it
                import traceback

                traceback.print_exc()
            finally:
                with open(os.path.join(request["workdir"], "exit"), "w") as done:
                    done.write(str(code))
                os._exit(code)
        print(pid, file=answers, flush=True)
