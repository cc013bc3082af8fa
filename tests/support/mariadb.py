"""Throwaway MariaDB servers started from the real ``mariadbd`` binary.

Each server gets a datadir in a temp directory, a free loopback port and the
binlog on, so pt-osc and replication behave as on a real cluster. A datadir
template is made once per process and copied, which keeps startup near 1 s.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import MySQLdb

TEST_USER = "shift_test"
TEST_PASSWORD = "Sh1ft-t3st-P4ss-word"
_TEMPLATE: Path | None = None
REDO_LOG = "48M"  # the servers' redo log; the template is made with it, so no start resizes it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _binary(*names: str) -> str:
    for name in names:
        for directory in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
            path = Path(directory) / name
            if path.exists():
                return str(path)
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(f"none of {names} is installed; run `make bootstrap`")


def _template_datadir() -> Path:
    """An initialised datadir, made once per process, copied for every server, removed when the process ends
    (by the process that made it: a forked child inherits the path, not the template)."""
    global _TEMPLATE
    if _TEMPLATE is not None and _TEMPLATE.exists():
        return _TEMPLATE
    base = Path(tempfile.mkdtemp(prefix="shift-mariadb-template-"))
    datadir = base / "data"
    subprocess.run(
        [_binary("mariadb-install-db", "mysql_install_db"), f"--datadir={datadir}", "--user=" + _user(),
         "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve",
         f"--innodb-log-file-size={REDO_LOG}"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    maker = os.getpid()
    atexit.register(lambda: os.getpid() == maker and shutil.rmtree(base, ignore_errors=True))
    _TEMPLATE = datadir
    return datadir


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


class SqlClient:
    """``query``/``execute`` on a fresh autocommit connection each, from a subclass's ``connect(database)``."""

    def connect(self, database: str | None = None) -> MySQLdb.Connection:
        raise NotImplementedError

    def query(self, sql: str, args: tuple | None = None, database: str | None = None) -> list[tuple]:
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def execute(self, *statements: str, database: str | None = None) -> None:
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
        finally:
            conn.close()


@dataclass
class MariaDBServer(SqlClient):
    """One running mariadbd; ``connect()`` gives a connection as the test user over TCP."""

    server_id: int = 1
    port: int = field(default_factory=free_port)
    basedir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="shift-mariadb-")))
    process: subprocess.Popen | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def datadir(self) -> Path:
        return self.basedir / "data"

    @property
    def socket_path(self) -> Path:
        return self.basedir / "mysqld.sock"

    def start(self) -> MariaDBServer:
        if not self.datadir.exists():
            shutil.copytree(_template_datadir(), self.datadir)
        args = [
            _binary("mariadbd", "mysqld"), "--no-defaults", f"--datadir={self.datadir}",
            f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket_path}",
            f"--pid-file={self.basedir / 'mysqld.pid'}", f"--log-error={self.basedir / 'error.log'}",
            f"--server-id={self.server_id}", f"--log-bin={self.basedir / 'binlog'}", "--binlog-format=ROW",
            "--log-slave-updates", "--skip-name-resolve", "--innodb-buffer-pool-size=64M",
            f"--innodb-log-file-size={REDO_LOG}", "--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0",
            "--max-connections=300", f"--tmpdir={self.basedir}", "--user=" + _user(), *self.extra_args,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited {self.process.returncode}: {self._error_log_tail()}")
            try:
                conn = MySQLdb.connect(unix_socket=str(self.socket_path), user="root", connect_timeout=2)
            except MySQLdb.OperationalError:
                time.sleep(0.1)
                continue
            with conn.cursor() as cur:
                cur.execute("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (TEST_USER, TEST_PASSWORD))
                cur.execute(f"GRANT ALL ON *.* TO `{TEST_USER}`@'%' WITH GRANT OPTION")
            conn.close()
            return self
        raise RuntimeError(f"mariadbd on port {self.port} did not start: {self._error_log_tail()}")

    def _error_log_tail(self) -> str:
        try:
            return (self.basedir / "error.log").read_text()[-2000:]
        except OSError:
            return "(no error log)"

    def stop(self, hard: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self, hard: bool = False) -> None:
        """Stop and start on the same port and datadir (for fault tests)."""
        self.stop(hard=hard)
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.basedir, ignore_errors=True)

    def connect(self, database: str | None = None, autocommit: bool = True) -> MySQLdb.Connection:
        conn = MySQLdb.connect(host=self.host, port=self.port, user=TEST_USER, passwd=TEST_PASSWORD,
                               db=database or "", connect_timeout=5, charset="utf8mb4")
        conn.autocommit(autocommit)
        return conn

    def replicate_from(self, primary: MariaDBServer) -> None:
        """Make this server a replica of ``primary`` from the primary's current binlog position."""
        file, position = primary.query("SHOW MASTER STATUS")[0][:2]
        self.execute(
            f"CHANGE MASTER TO MASTER_HOST='{primary.host}', MASTER_PORT={primary.port}, "
            f"MASTER_USER='{TEST_USER}', MASTER_PASSWORD='{TEST_PASSWORD}', "
            f"MASTER_LOG_FILE='{file}', MASTER_LOG_POS={position}",
            "START SLAVE",
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = self.replica_status()
            if status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes":
                return
            time.sleep(0.1)
        raise RuntimeError(f"replication did not start: {self.replica_status()}")

    def replica_status(self) -> dict:
        conn = self.connect()
        try:
            with conn.cursor(MySQLdb.cursors.DictCursor) as cur:
                cur.execute("SHOW SLAVE STATUS")
                return cur.fetchone() or {}
        finally:
            conn.close()

    def wait_replica_caught_up(self, primary: MariaDBServer, timeout: float = 30) -> None:
        file, position = primary.query("SHOW MASTER STATUS")[0][:2]
        rows = self.query("SELECT MASTER_POS_WAIT(%s, %s, %s)", (file, position, int(timeout)))
        if rows[0][0] is None or rows[0][0] < 0:
            raise RuntimeError(f"replica did not catch up with {file}:{position}: {self.replica_status()}")
