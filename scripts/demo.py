"""The demo: a private MariaDB, the reference shift API, Airflow standalone, one sample migration.

Everything lives under .demo/ and is stopped by `make demo-stop` (by pid/process group).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.mariadb import TEST_PASSWORD, TEST_USER, MariaDBServer  # noqa: E402
from tests.support.tables import columns_of, create_sample_table, row_count  # noqa: E402

DEMO = REPO / ".demo"
PIDS = DEMO / "pids.json"
BIN = REPO / ".venv" / "bin"
ROWS = int(os.environ.get("DEMO_ROWS", "1000000"))
API_PORT = int(os.environ.get("DEMO_API_PORT", "3000"))
AIRFLOW_PORT = int(os.environ.get("DEMO_AIRFLOW_PORT", "8080"))
DDL = "ALTER TABLE employees ADD COLUMN salary INT NULL, ADD INDEX idx_created (created)"


def about(rows: object) -> str:
    """An InnoDB TABLE_ROWS value as what it is: an estimate."""
    return "unknown" if rows is None else f"about {int(rows):,} (estimate)"


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except Exception:
            time.sleep(0.5)
    raise SystemExit(f"[demo] {url} did not answer within {timeout:.0f} s")


def airflow_env() -> dict[str, str]:
    env = os.environ.copy()
    env.update({
        "PATH": f"{BIN}:{env.get('PATH', '')}",
        "AIRFLOW_HOME": str(DEMO / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__PORT": str(AIRFLOW_PORT),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{AIRFLOW_PORT}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW_CONN_SHIFT_API": f"http://127.0.0.1:{API_PORT}/api/v1/",
        "SHIFT_CONFIG": str(DEMO / "settings.yaml"),
    })
    return env


def client(*args: str) -> dict:
    out = subprocess.run([str(BIN / "shift-client"), "--url", f"http://127.0.0.1:{API_PORT}/api/v1/", *args],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"[demo] shift-client {' '.join(args)} failed: {out.stderr.strip()}")
    data = json.loads(out.stdout)
    return data.get("migration", data)


def wait_status(migration_id: int, statuses: set[int], timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        migration = client("get", str(migration_id))
        if migration["status"] != last or migration["status"] == 3 and migration.get("copy_percentage") is not None:
            pct = migration.get("copy_percentage")
            say(f"migration {migration_id}: status {migration['status']}" + (f", copy {pct}%" if pct is not None else ""))
            last = migration["status"]
        if migration["status"] in statuses:
            return migration
        if migration["status"] in (10, 13):
            raise SystemExit(f"[demo] migration {migration_id} failed: {migration.get('error_message')}")
        time.sleep(1)
    raise SystemExit(f"[demo] timed out waiting for {what}")


def airflow_get(path: str) -> dict:
    with urllib.request.urlopen(f"http://localhost:{AIRFLOW_PORT}/api/v2/{path}", timeout=10) as response:
        return json.load(response)


def copy_xcom(migration_id: int) -> object:
    """The copy task's copy_percentage XCom, read back through Airflow's own REST API."""
    run_id = f"mig-{migration_id}"  # the migration's one run
    entry = airflow_get(f"dags/shift_migration/dagRuns/{run_id}/taskInstances/copy/xcomEntries/copy_percentage")
    return run_id, entry["value"]


def start() -> None:
    if PIDS.exists():
        say("a demo is already running; `make demo-stop` first")
        raise SystemExit(1)
    if DEMO.exists():
        # What an earlier, stopped demo left (its database, shift API store, Airflow home): each
        # demo starts from nothing, so a second `make demo` runs the same story again.
        say(f"removing the earlier demo's files in {DEMO}")
        shutil.rmtree(DEMO)
    DEMO.mkdir()
    pids: dict[str, int] = {}

    say("starting a private MariaDB")
    db = MariaDBServer(server_id=1, basedir=DEMO / "mariadb")
    db.basedir.mkdir(exist_ok=True)
    db.start()
    pids["mariadb"] = db.process.pid
    PIDS.write_text(json.dumps(pids))
    say(f"loading demo.employees with {ROWS:,} rows")
    create_sample_table(db, "demo", "employees", ROWS)

    (DEMO / "settings.yaml").write_text(json.dumps({
        "mysql_user": TEST_USER, "mysql_password": TEST_PASSWORD, "log_dir": str(DEMO / "logs"),
        "stop_file_path": str(DEMO / "stop"), "rest_api": f"http://127.0.0.1:{API_PORT}/api/v1/",
        "shift_ui_url_template": f"http://127.0.0.1:{API_PORT}/migrations/{{id}}",
        "staged_poll_interval": 2, "clusters": ["demo"],
    }))

    say(f"starting the reference shift API on :{API_PORT}")
    api = subprocess.Popen([str(BIN / "shift-api-server"), "--port", str(API_PORT), "--db", str(DEMO / "shift.sqlite3"),
                            "--cluster", f"demo=127.0.0.1:{db.port}"],
                           stdout=open(DEMO / "shift-api.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    pids["shift_api"] = api.pid
    PIDS.write_text(json.dumps(pids))
    wait_http(f"http://127.0.0.1:{API_PORT}/api/v1/migrations/staged", 30)

    env = airflow_env()
    say("preparing Airflow (SQLite metadata, pool shift_copy)")
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([str(BIN / "airflow"), "pools", "set", "shift_copy", "4", "shift: copies running at once"],
                   env=env, check=True, capture_output=True)
    say(f"starting Airflow standalone on :{AIRFLOW_PORT}")
    airflow = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=env, stdout=open(DEMO / "airflow.log", "w"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    pids["airflow"] = airflow.pid
    PIDS.write_text(json.dumps(pids))
    wait_http(f"http://localhost:{AIRFLOW_PORT}/api/v2/monitor/health", 180)
    subprocess.run([str(BIN / "airflow"), "dags", "reserialize"], env=env, capture_output=True)

    rows_before = row_count(db, "demo", "employees")  # exact: the estimates shift stores can be off by a few %
    say(f"filing the sample migration: {DDL}")
    migration = client("create", "--cluster", "demo", "--database", "demo", "--ddl", DDL,
                       "--final-insert", "INSERT INTO demo.employees (name, amount, created) VALUES ('demo-final-insert', 0, NOW())",
                       "--requestor", "demo")
    mid = migration["id"]
    say(f"watch it: Airflow UI http://localhost:{AIRFLOW_PORT}/dags/shift_migration (no login in the demo), "
        f"or `.venv/bin/shift-client --url http://127.0.0.1:{API_PORT}/api/v1/ get {mid}`")
    wait_status(mid, {1}, 300, "prepare (status 1 awaiting approval)")
    say("approving (long run) and starting, as a DBA would")
    client("approve", str(mid), "--runtype", "long", "--approver", "demo-dba")
    client("start", str(mid))
    wait_status(mid, {4}, 900, "the copy (status 4 awaiting rename)")
    say("renaming, as a DBA would")
    client("rename", str(mid))
    done = wait_status(mid, {8}, 300, "the rename (status 8 completed)")
    columns = columns_of(db, "demo", "employees")
    assert "salary" in columns, columns
    rows_after = row_count(db, "demo", "employees")
    say(f"migration {mid} completed: demo.employees now has columns {columns}")
    copy_run, percentage = copy_xcom(mid)
    say(f"Airflow shows the migration as one run, {copy_run}: prepare, await_start, copy (XCom copy_percentage = "
        f"{percentage}), await_rename, rename; "
        f"the migration's page: http://127.0.0.1:{API_PORT}/migrations/{mid}")
    say(f"Airflow keeps running at http://localhost:{AIRFLOW_PORT}; stop everything with `make demo-stop`")
    say(f"shift's table_rows_start/_end are information_schema estimates: {about(done.get('table_rows_start'))} "
        f"before, {about(done.get('table_rows_end'))} after")
    say(f"rows in demo.employees, exact (SELECT COUNT(*)): {rows_before:,} before, {rows_after:,} after "
        f"({rows_after - rows_before:+,}: the final insert's row)")


def stop() -> None:
    if not PIDS.exists():
        say("nothing to stop")
        return
    pids = json.loads(PIDS.read_text())
    for name in ("airflow", "shift_api", "mariadb"):
        pid = pids.get(name)
        if not pid:
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
            say(f"stopped {name} (process group {pid})")
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    for pid in pids.values():
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
                time.sleep(0.3)
            except ProcessLookupError:
                break
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    PIDS.unlink()


if __name__ == "__main__":
    {"start": start, "stop": stop}[sys.argv[1] if len(sys.argv) > 1 else "start"]()
