"""Shared fixtures: real MariaDB servers, the real pt-osc, an isolated Airflow home.

Airflow reads its configuration at import, so the environment is set here,
before any test module imports airflow or shift_provider.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="shift-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# The DAGs folder Airflow serializes for dag.test(): the project's DAGs plus the
# test-only DAGs of tests/dags (which wrap one operator each).
_DAGS_FOLDER = _AIRFLOW_HOME / "dags"
_DAGS_FOLDER.mkdir()
for _source in [*sorted((REPO / "dags").glob("*.py")), *sorted((REPO / "tests" / "dags").glob("*.py"))]:
    (_DAGS_FOLDER / _source.name).symlink_to(_source)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_DAGS_FOLDER)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__PARALLELISM"] = "4"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
os.environ.setdefault("ENVIRONMENT", "development")

import pytest  # noqa: E402

from tests.support.mariadb import MariaDBServer  # noqa: E402


@pytest.fixture(scope="session")
def primary():
    """A MariaDB primary shared by the session; tests isolate through their own database."""
    server = MariaDBServer(server_id=1).start()
    yield server
    server.destroy()


@pytest.fixture
def database(primary):
    """A fresh database on the session primary, dropped afterwards."""
    name = "t_" + uuid.uuid4().hex[:10]
    primary.execute(f"CREATE DATABASE `{name}`")
    yield name
    primary.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def cluster():
    """A fresh primary with a replica replicating from it (for lag-sensitive tests)."""
    primary = MariaDBServer(server_id=11).start()
    replica = MariaDBServer(server_id=12).start()
    replica.replicate_from(primary)
    yield primary, replica
    replica.destroy()
    primary.destroy()


@pytest.fixture(scope="session")
def ptosc():
    """The real pt-online-schema-change: (path, version string)."""
    path = shutil.which("pt-online-schema-change")
    assert path, "pt-online-schema-change is not installed; run `make bootstrap`"
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    return path, version.split()[-1]


@pytest.fixture(scope="session")
def airflow_home():
    """An initialised Airflow metadata database (SQLite) for DAG tests."""
    subprocess.run([str(REPO / ".venv/bin/airflow"), "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    yield _AIRFLOW_HOME


# The files that take minutes, longest first (seconds on 4 workers, `--durations=0`, summed per file).
# `make test` runs whole files per worker (`--dist loadfile`) in collection order
# (`--no-loadscope-reorder`; xdist's default order, most tests first, started these last and left
# one worker running them alone at the end). Only the wall time depends on this order.
LONGEST_FIRST = (
    "tests/deployment/test_copies_and_workers.py",  # 449
    "tests/deployment/test_celery_topology.py",  # 374
    "tests/faults/test_faults.py",  # 221
    "tests/e2e/test_table_isolation.py",  # 183
    "tests/faults/test_kill_points.py",  # 162
    "tests/e2e/test_concurrent_paths.py",  # 160
    "tests/e2e/test_rails_conformance.py",  # 120
    "tests/e2e/test_claim_races.py",  # 108
    "tests/e2e/test_instant_ddl.py",  # 106
    "tests/operators/test_instant_ddl.py",  # 102
    "tests/e2e/test_out_of_scope.py",  # 89
    "tests/faults/test_bench_smoke.py",  # 81
)


def pytest_collection_modifyitems(session, config, items):
    """The long files first (``LONGEST_FIRST``), the rest as collected; tests keep their order within a file."""
    rank = {path: index for index, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture
def shift_settings(tmp_path, monkeypatch):
    """Write a settings YAML for the test servers and point SHIFT_CONFIG at it.

    Call it with overrides: ``settings = shift_settings(enable_trash=False)``.
    """
    import yaml

    from shift_provider.settings import get_settings
    from tests.support.mariadb import TEST_PASSWORD, TEST_USER

    def make(**overrides):
        data = {
            "mysql_user": TEST_USER, "mysql_password": TEST_PASSWORD,
            "log_dir": str(tmp_path / "shift-logs"), "stop_file_path": str(tmp_path / "stop"),
            "pending_drops_db": "_pending_drops", "enable_trash": True,
            "log_sync_interval": 1, "state_sync_interval": 1, "progress_interval": 1,
            "control_poll_interval": 0.5, "staged_poll_interval": 0.5, "wait_check_interval": 1,
            "adopt_staged_after": 2,
            "allowed_config_dirs": [str(tmp_path / "ptosc-configs")],
        }
        data.update(overrides)
        path = tmp_path / f"settings-{len(list(tmp_path.glob('settings-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(data))
        monkeypatch.setenv("SHIFT_CONFIG", str(path))
        return get_settings()

    return make


@pytest.fixture
def shift_api(primary):
    """A real ``shift-api-server`` with cluster ``primary`` -> the session MariaDB primary.

    Yields a ``tests.support.shift_api.ShiftApiServer`` (``.url``, ``.create()``, ``.human()``,
    ``.machine()``, ``.migration()``); ``AIRFLOW_CONN_SHIFT_API`` points at it meanwhile, so
    ``ShiftApiHook()`` finds it.
    """
    from tests.support.shift_api import ShiftApiServer

    server = ShiftApiServer({"primary": (primary.host, primary.port)}).start()
    previous = os.environ.get("AIRFLOW_CONN_SHIFT_API")
    os.environ["AIRFLOW_CONN_SHIFT_API"] = server.url
    try:
        yield server
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_CONN_SHIFT_API", None)
        else:
            os.environ["AIRFLOW_CONN_SHIFT_API"] = previous
        server.stop()
