"""A real multi-process Airflow deployment on loopback: the topology of the README's production recipe.

``Deployment().start()`` starts, each in its own process group on free 127.0.0.1 ports:

* a private PostgreSQL 15 for Airflow's metadata (and Celery's result backend),
* a private ``redis-server`` as the Celery broker (no persistence),
* two MariaDB "clusters" (``one``, ``two``) and the reference shift API knowing both,
* ``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer``,
* two ``airflow celery worker`` processes (``worker-a``, ``worker-b``), each with its own
  host name (``SHIFT_RUN_HOST``, also Airflow's ``hostname_callable``), as if on two machines.

Every component is watched (``Deployment.crashed``): one that exits on its own fails the
test that is waiting (``wait_for``) with its log tail; nothing is restarted behind the test's
back. The workers are left out: the tests stop them on purpose.

Top-level imports stay light: every Airflow process imports this module for
``worker_hostname`` (the ``[core] hostname_callable``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
AIRFLOW = str(BIN / "airflow")
WORKERS = ("worker-a", "worker-b")
# Must never exit while the deployment runs: a crash of one fails the test (never restarted).
WATCHED = ("metadata-db", "redis", "api-server", "scheduler", "dag-processor", "triggerer")
PG_BIN = Path(os.environ.get("SHIFT_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"  # PostgreSQL refuses to run as root: as root, its servers run as this user
# Checks every wait_for runs between polls (a started Deployment's crash check), so a crashed
# component fails the waiting test at once instead of after the wait's timeout.
_HEALTH_CHECKS: list = []
DEFAULT_QUEUE = "default"
# pt-osc throttled enough that a copy of tens of thousands of rows lasts tens of seconds.
SLOW_COPY = ["--chunk-size=200", "--chunk-size-limit=0", "--sleep=0.05"]


def worker_hostname() -> str:
    """``[core] hostname_callable``: the per-worker name (``SHIFT_RUN_HOST``), else the FQDN."""
    return os.environ.get("SHIFT_RUN_HOST") or socket.getfqdn()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        for check in list(_HEALTH_CHECKS):
            check()
        try:
            value = predicate()
        except Exception as exc:  # a component still starting: ask again
            last_exc, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


@dataclass
class Component:
    """One long-running process, leader of its own process group."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    cwd: str = str(REPO)

    def start(self) -> Component:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.cwd)
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, sig: int) -> bool:
        try:
            os.killpg(self.pid, sig)
            return True
        except ProcessLookupError:
            return False

    def group_alive(self) -> bool:
        """Any process of the group left (the leader may be gone already)."""
        try:
            os.killpg(self.pid, 0)
            return True
        except ProcessLookupError:
            return False

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> None:
        """``sig`` to the whole group, then KILL whatever is left after ``timeout`` seconds."""
        if self.process is None:
            return
        self.signal_group(sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.group_alive():
            self.process.poll()  # reap the leader so killpg(0) stops seeing a zombie
            time.sleep(0.1)
        self.signal_group(signal.SIGKILL)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def _as_postgres_user() -> list[str]:
    """argv prefix running a PostgreSQL binary as ``PG_USER`` when we are root (it refuses root).
    ``setpriv`` execs in place: the server stays the leader of the process group we stop."""
    if os.getuid() != 0:
        return []
    return ["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups", "--"]


@dataclass
class PostgresServer:
    """A private PostgreSQL for Airflow's metadata: initdb under ``basedir``, trust auth on 127.0.0.1,
    durability off (a test database), database ``airflow``."""

    basedir: Path
    log_path: Path
    port: int = 0
    component: Component | None = None

    @property
    def datadir(self) -> Path:
        return self.basedir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.basedir / "run"

    def url(self, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{PG_USER}@127.0.0.1:{self.port}/airflow"

    def start(self) -> PostgresServer:
        from tests.support.mariadb import free_port

        self.port = self.port or free_port()
        self.basedir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        prefix = _as_postgres_user()
        if prefix:  # the server's user owns its directories and can reach them (mkdtemp makes 0700)
            for path in (self.basedir, self.socket_dir):
                shutil.chown(path, PG_USER, PG_USER)
            workdir = self.basedir.parent
            workdir.chmod(workdir.stat().st_mode | 0o011)  # traverse only, no listing
        env = dict(os.environ, LC_ALL="C", LANG="C")
        init = subprocess.run([*prefix, str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", PG_USER,
                               "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"],
                              env=env, capture_output=True, text=True, timeout=120, cwd="/")
        if init.returncode != 0:
            raise RuntimeError(f"initdb exited {init.returncode}: {init.stdout[-2000:]}{init.stderr[-2000:]}")
        settings = {
            "listen_addresses": "127.0.0.1", "port": self.port, "unix_socket_directories": str(self.socket_dir),
            "max_connections": 200, "shared_buffers": "32MB",
            "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
            "logging_collector": "off",
        }
        argv = [*prefix, str(PG_BIN / "postgres"), "-D", str(self.datadir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        self.component = Component("metadata-db", argv, env, self.log_path, cwd="/").start()

        def answers() -> bool:
            assert self.component.alive(), f"postgres exited: {self.component.log_tail()}"
            self.execute("SELECT 1", database="postgres")
            return True

        wait_for(answers, 60, "postgres", interval=0.2)
        self.execute("CREATE DATABASE airflow ENCODING 'UTF8'", database="postgres")
        return self

    def execute(self, sql: str, database: str = "airflow") -> None:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=PG_USER, dbname=database, connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(sql)
        finally:
            conn.close()

    def stop(self) -> None:
        """SIGINT: PostgreSQL's fast shutdown (sessions ended, clean checkpoint)."""
        if self.component is not None:
            self.component.stop(timeout=20, sig=signal.SIGINT)


@dataclass
class Deployment:
    """The whole topology; ``start()`` then ``stop()``. Everything lives under ``workdir``."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="shift-deploy-")))
    clusters: tuple[str, ...] = ("one", "two")
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    airflow_overrides: dict[str, str] = field(default_factory=dict)
    keep_workdir: bool = False

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.components: dict[str, Component] = {}
        self.servers: dict[str, Any] = {}  # cluster name -> MariaDBServer
        self.meta: PostgresServer | None = None  # the Airflow metadata database
        self.shift_api = None  # ShiftApiServer
        self.redis: Component | None = None
        self.airflow_port = 0
        self.redis_port = 0
        self.timings: dict[str, float] = {}
        self._stopping = threading.Event()

    # -- addresses --------------------------------------------------------------------------

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def settings_path(self) -> Path:
        return self.workdir / "shift-settings.yaml"

    @property
    def stop_file(self) -> Path:
        return self.workdir / "shift-stop"

    # -- start ------------------------------------------------------------------------------

    def start(self) -> Deployment:
        started = time.monotonic()
        _HEALTH_CHECKS.append(self.assert_healthy)  # a component that dies while starting fails at once
        try:
            self._start_databases()
            self._start_redis()
            self._start_shift_api()
            self._write_settings()
            self.env = self._airflow_env()
            self._prepare_airflow()
            self._start_airflow()
        except BaseException:
            self.stop()
            raise
        self.timings["startup"] = time.monotonic() - started
        self._write_pids()
        return self

    def crashed(self) -> list[Component]:
        """Watched components that exited on their own (none is ever restarted)."""
        if self._stopping.is_set():
            return []
        return [c for name in WATCHED if (c := self.components.get(name)) is not None and not c.alive()]

    def assert_healthy(self) -> None:
        """AssertionError naming every crashed component, with its exit code and log tail."""
        crashed = self.crashed()
        if crashed:
            raise AssertionError("deployment component(s) crashed: " + "; ".join(
                f"{c.name} exited {c.process.returncode}, log tail:\n{c.log_tail()}" for c in crashed))

    def _mark(self, name: str, since: float) -> None:
        self.timings[name] = round(time.monotonic() - since, 1)

    def _start_databases(self) -> None:
        from tests.support.mariadb import MariaDBServer

        t = time.monotonic()
        self.meta = PostgresServer(self.workdir / "metadata-db", self.workdir / "metadata-db.log")
        try:
            self.meta.start()
        finally:
            if self.meta.component is not None:
                self.components["metadata-db"] = self.meta.component
        self._mark("postgres", t)
        t = time.monotonic()
        for index, name in enumerate(self.clusters):
            self.servers[name] = MariaDBServer(server_id=91 + index, basedir=self.workdir / f"cluster-{name}").start()
        self._mark("mariadb", t)

    def _start_redis(self) -> None:
        from tests.support.mariadb import free_port

        t = time.monotonic()
        self.redis_port = free_port()
        redis_dir = self.workdir / "redis"
        redis_dir.mkdir(exist_ok=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.redis = Component("redis", [binary, "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no", "--dir", str(redis_dir),
                                         "--protected-mode", "no"],
                               dict(os.environ), self.workdir / "redis.log").start()
        self.components["redis"] = self.redis

        def answers() -> bool:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        wait_for(answers, 20, "redis-server")
        self._mark("redis", t)

    def _start_shift_api(self) -> None:
        from tests.support.shift_api import ShiftApiServer

        self.shift_api = ShiftApiServer({name: (s.host, s.port) for name, s in self.servers.items()},
                                        db_path=self.workdir / "shift.sqlite3").start()

    def _write_settings(self) -> None:
        import yaml

        from tests.support.mariadb import TEST_PASSWORD, TEST_USER

        data = {
            "mysql_user": TEST_USER, "mysql_password": TEST_PASSWORD,
            "rest_api": self.shift_api.url,
            "log_dir": str(self.workdir / "shift-logs"), "stop_file_path": str(self.stop_file),
            "pending_drops_db": "_pending_drops", "enable_trash": True,
            "clusters": list(self.clusters),
            "staged_poll_interval": 2, "control_poll_interval": 1,
            "adopt_staged_after": 6, "wait_check_interval": 10,
            "log_sync_interval": 2, "state_sync_interval": 2, "progress_interval": 1,
            "ptosc_extra_args": SLOW_COPY,
            "prefer_instant_ddl": False,  # every ALTER goes through pt-osc: the copy is what is proved
        }
        data.update(self.settings_overrides)
        self.settings_path.write_text(yaml.safe_dump(data))

    def _airflow_env(self) -> dict[str, str]:
        from tests.support.mariadb import free_port

        from cryptography.fernet import Fernet

        self.airflow_port = free_port()
        home = self.workdir / "airflow"
        home.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AIRFLOW") and k not in ("SHIFT_CONFIG", "SHIFT_CONFIG_DIR", "PYTEST_CURRENT_TEST")}
        env.update({
            "PATH": f"{BIN}:{env.get('PATH', '/usr/local/bin:/usr/bin:/bin')}",
            "PYTHONPATH": str(REPO),  # tests.support.deployment.worker_hostname
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.support.deployment.worker_hostname",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.airflow_port}/execution/",
            "AIRFLOW__API__PORT": str(self.airflow_port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.airflow_port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.meta.url("postgresql+psycopg2"),
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            # The driver named: SQLAlchemy's default for postgresql:// is psycopg 3, not installed.
            "AIRFLOW__CELERY__RESULT_BACKEND": self.meta.url("db+postgresql+psycopg2"),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "30",
            # A worker that vanished (kill -9, lost node) is noticed after this many seconds
            # (300 by default); its copy is then handed back by the copy task's failure callback.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            "AIRFLOW__TRIGGERER__CAPACITY": "50",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_SHIFT_API": self.shift_api.url,
            "SHIFT_CONFIG": str(self.settings_path),
        })
        env.update(self.airflow_overrides)
        return env

    def airflow_cli(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                             cwd=str(REPO))
        if check and out.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} exited {out.returncode}: {out.stderr[-3000:]}")
        return out

    def _prepare_airflow(self) -> None:
        t = time.monotonic()
        self.airflow_cli("db", "migrate", timeout=300)
        self._mark("db_migrate", t)

    def _component(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Component:
        component = Component(name, argv, env or self.env, self.workdir / f"{name}.log").start()
        self.components[name] = component
        return component

    def _start_airflow(self) -> None:
        t = time.monotonic()
        self._component("api-server", [AIRFLOW, "api-server", "--port", str(self.airflow_port),
                                       "--host", "127.0.0.1", "--workers", "1"])
        self._component("scheduler", [AIRFLOW, "scheduler"])
        self._component("dag-processor", [AIRFLOW, "dag-processor"])
        self._component("triggerer", [AIRFLOW, "triggerer"])
        for name in WORKERS:
            self.start_worker(name, wait=False)
        wait_for(lambda: self.rest("GET", "monitor/health"), 120, "the api-server", interval=0.5)
        self._mark("api_server", t)
        # `airflow pools set shift_copy 4 ...` through the REST API: no extra CLI start-up.
        self.rest("POST", "pools", {"name": "shift_copy", "slots": 4, "include_deferred": False,
                                    "description": "shift: copies running at once"})
        for name in WORKERS:
            self.wait_worker_ready(name)
        self._mark("workers", t)
        wait_for(lambda: self.dag_ready("shift_migration") and self.dag_ready("shift_staged_migrations"), 120,
                 "the DAGs to be parsed and unpaused", interval=0.5)
        self._mark("dags", t)
        for name, component in self.components.items():
            assert component.alive(), f"{name} exited: {component.log_tail()}"

    # -- workers ----------------------------------------------------------------------------

    def worker_env(self, name: str) -> dict[str, str]:
        from tests.support.mariadb import free_port

        return dict(self.env, SHIFT_RUN_HOST=name,
                    AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()))

    def celery_hostname(self, name: str) -> str:
        return f"{name}@{socket.gethostname()}"

    def start_worker(self, name: str, wait: bool = True) -> Component:
        log = self.workdir / f"{name}.log"
        if log.exists():  # a restarted worker: keep the earlier log beside it
            log.rename(self.workdir / f"{name}.{int(time.time() * 1000)}.log")
        component = self._component(name, [AIRFLOW, "celery", "worker", "--celery-hostname",
                                           self.celery_hostname(name), "--queues", DEFAULT_QUEUE,
                                           "--concurrency", "2", "--without-mingle", "--without-gossip"],
                                    env=self.worker_env(name))
        if wait:
            self.wait_worker_ready(name)
        return component

    def wait_worker_ready(self, name: str, timeout: float = 90) -> None:
        component = self.components[name]

        def ready() -> bool:
            assert component.alive(), f"{name} exited: {component.log_tail()}"
            return " ready." in component.log_tail(20000)

        wait_for(ready, timeout, f"celery worker {name}", interval=0.5)

    def celery(self):
        """A Celery app on the deployment's broker, for ``control`` (consumers, inspect)."""
        if getattr(self, "_celery", None) is None:
            from celery import Celery

            self._celery = Celery(broker=self.broker_url)
        return self._celery

    def set_consuming(self, name: str, consuming: bool) -> None:
        """Let worker ``name`` take new tasks from the default queue, or not (running ones go on)."""
        destination = [self.celery_hostname(name)]
        control = self.celery().control
        if consuming:
            answer = control.add_consumer(DEFAULT_QUEUE, destination=destination, reply=True, timeout=5)
        else:
            answer = control.cancel_consumer(DEFAULT_QUEUE, destination=destination, reply=True, timeout=5)
        assert answer, f"worker {name} did not answer the consumer change"

    def active_celery_tasks(self) -> dict[str, list[dict]]:
        """Tasks each worker is running right now (Celery's own view)."""
        return self.celery().control.inspect(timeout=3).active() or {}

    # -- stop -------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()
        if self.assert_healthy in _HEALTH_CHECKS:
            _HEALTH_CHECKS.remove(self.assert_healthy)
        # Airflow's components all at once (TERM to each group, KILL what is left after 20 s).
        airflow = [c for name, c in self.components.items()
                   if name not in ("redis", "metadata-db") and c.process is not None]
        for component in airflow:
            component.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(c.group_alive() for c in airflow):
            for component in airflow:
                component.process.poll()
            time.sleep(0.1)
        for component in airflow:
            component.stop(timeout=0)
        if getattr(self, "_celery", None) is not None:
            try:
                self._celery.close()
            except Exception:
                pass
        if self.shift_api is not None:
            self.shift_api.stop()
        if self.redis is not None:
            self.redis.stop(timeout=10)
        for server in self.servers.values():
            server.stop()
        if self.meta is not None:
            self.meta.stop()
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            if self.shift_api is not None:
                shutil.rmtree(self.shift_api.workdir, ignore_errors=True)

    def _write_pids(self) -> None:
        pids = {name: c.pid for name, c in self.components.items()}
        pids.update({f"mariadb-{name}": s.process.pid for name, s in self.servers.items()})
        pids["shift-api"] = self.shift_api.process.pid
        (self.workdir / "pids.json").write_text(json.dumps(pids, indent=1))

    # -- Airflow's REST API -----------------------------------------------------------------

    def rest(self, method: str, path: str, body: dict | None = None, params: dict | None = None) -> Any:
        import requests

        response = requests.request(method, f"{self.airflow_url}/api/v2/{path}", json=body, params=params,
                                    timeout=10)
        response.raise_for_status()
        return response.json()

    def dag_ready(self, dag_id: str) -> bool:
        import requests

        try:
            dag = self.rest("GET", f"dags/{dag_id}")
        except requests.HTTPError:
            return False
        return not dag.get("is_paused")

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.rest("GET", f"dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "-run_after"})["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.rest("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})["task_instances"]

    def migration_runs(self, migration_id: int, step: str | None = None) -> list[dict]:
        """shift_migration runs of one migration (``mig-<id>``, adopting runs ``mig-<id>-<n>``), oldest first.

        ``step``: only the runs in which that step's task (``copy``, ``rename``, ``prepare.advance``...) acted.
        """
        runs = [r for r in self.dag_runs("shift_migration")
                if r["dag_run_id"] == f"mig-{migration_id}" or r["dag_run_id"].startswith(f"mig-{migration_id}-")]
        if step:
            task = {"prepare": "prepare.advance"}.get(step, step)
            runs = [r for r in runs if any(ti["task_id"] == task and ti["state"] not in ("skipped", None)
                                           for ti in self.task_instances("shift_migration", r["dag_run_id"]))]
        return sorted(runs, key=lambda r: r["dag_run_id"])

    def migration_tis(self, migration_id: int, step: str | None = None) -> list[dict]:
        """Every task instance of the migration's runs (each with its run id)."""
        tis = []
        for run in self.migration_runs(migration_id, step):
            tis.extend(self.task_instances("shift_migration", run["dag_run_id"]))
        return tis


# -- processes on this machine -------------------------------------------------------------

def ptosc_processes(database: str | None = None, table: str | None = None) -> list:
    """Running pt-online-schema-change processes, optionally only those on ``database``.``table``."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if not any("pt-online-schema-change" in part for part in cmdline):
            continue
        dsn = cmdline[-1] if cmdline else ""
        if database is not None and f"D={database}," not in dsn:
            continue
        if table is not None and not dsn.endswith(f",t={table}"):
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.NoSuchProcess:
            continue
        found.append(proc)
    return found


def worker_of(proc, deployment: Deployment) -> str | None:
    """Which worker (by name) a process descends from; pt-osc runs in its own session but keeps its parent."""
    import psutil

    roots = {c.pid: name for name, c in deployment.components.items() if name in WORKERS and c.alive()}
    try:
        for parent in proc.parents():
            if parent.pid in roots:
                return roots[parent.pid]
    except psutil.NoSuchProcess:
        return None
    return None
