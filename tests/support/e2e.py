"""End-to-end helpers: the sensor DAG claims, then the run it queued is run too, with a DBA alongside.

``dag.test()`` of the sensor DAG only queues the shift_migration runs its
TriggerDagRunOperator creates; these helpers take their conf and run them through
``dag.test()`` as well (the queued run itself is removed). A run now follows its
migration through the human waits, whose triggers ``dag.test()`` runs inline; a
``Dba`` thread plays the human meanwhile: at each status of its script it acts once
(and may assert what the runner left at that point).

Step mode (no script): tests written step by step run each claim's run with the human
waits marked done, as if the DBA had marked them; the run then does the one step its
claim calls for and ends. The next step, once the test did the human action, is
claimed by the sensor DAG as an adoption (no run waits for it), into a new run
``mig-<id>-<lock_version>`` starting at that step. ``step_of(run)`` names the step a
run did.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from tests.support.airflow import run_dag


class Dba:
    """In a thread: when migration ``mid`` reaches a status of ``script``, call that action (once).

    When an action fails (an assertion) or the script is not done within ``timeout`` seconds, the
    migration is failed in shift, so the run's wait ends instead of blocking ``dag.test()`` forever;
    the error is raised when the block exits.
    """

    def __init__(self, api, mid: int, script: dict[int, Callable[[], Any]], poll: float = 0.1,
                 timeout: float = 300.0) -> None:
        self.api, self.mid, self.script, self.poll = api, mid, dict(script), poll
        self.deadline = time.monotonic() + timeout
        self.done: list[int] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"dba-{mid}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self.api.request("GET", f"migrations/{self.mid}")
                status = answer.json()["migration"]["status"] if answer.status_code == 200 else None  # deleted
                action = self.script.pop(status, None)
                if action is not None:
                    result = action()
                    if getattr(result, "status_code", 200) != 200:
                        # Refused (e.g. the runner moved lock_version on between read and write): a human
                        # clicks again while the migration is still at that status.
                        self.script[status] = action
                    else:
                        self.done.append(status)
                if time.monotonic() > self.deadline:
                    raise AssertionError(f"the run did not end in time: statuses {sorted(self.script)} of the DBA "
                                         f"script not reached (migration {self.mid} at {status})")
            except BaseException as exc:  # an assertion of the script: reported on exit
                self.error = exc
                self.api.request("POST", "migrations/fail", {"id": self.mid, "error_message": f"test DBA: {exc}"})
                return
            self._stop.wait(self.poll)

    def __enter__(self) -> Dba:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.error is not None and exc[0] is None:
            raise self.error


def queued_migration_runs() -> list[tuple[str, dict[str, Any]]]:
    """(run_id, conf) of the queued shift_migration runs, removed from the metadata DB."""
    return [(run_id, conf) for run_id, conf, _ in queued_migration_runs_with_notes()]


def queued_migration_runs_with_notes() -> list[tuple[str, dict[str, Any], str | None]]:
    """(run_id, conf, note) of the queued shift_migration runs, removed from the metadata DB."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == "shift_migration", DagRun.state == "queued").all()
        found = [(run.run_id, dict(run.conf or {}), run.note) for run in runs]
        for run in runs:
            session.delete(run)
    return found


WAITS = r"await_start|await_rename"
STEP_TASKS = {"prepare": "prepare.advance", "copy": "copy", "run_ddl": "run_ddl", "rename": "rename"}


def step_of(dag_run) -> str | None:
    """The step a step-mode run did: the step task that did not end skipped (or the cancel's cleanup)."""
    from tests.support.airflow import task_states, xcoms

    states = task_states(dag_run)
    if any(v.get("migration_ended", "").endswith("removed its triggers and shadow table")
           for v in xcoms(dag_run).values() if isinstance(v, dict)):
        return "cancel"
    acted = {task for task, state in states.items() if state in ("success", "failed")}
    done = [step for step, task in STEP_TASKS.items()
            if task in acted or (step == "prepare" and any(t.startswith("prepare.") for t in acted))]
    return done[0] if len(done) == 1 else None


def run_migration(conf: dict[str, Any], api=None, script: dict[int, Callable[[], Any]] | None = None):
    """One shift_migration run of ``conf`` through ``dag.test()``, a DBA acting on ``script`` meanwhile.

    Without a script: step mode (the waits marked done; see the module's docstring).
    """
    if not script:
        return run_dag("shift_migration", conf, mark_success_pattern=WAITS)
    with Dba(api, conf["id"], script):
        return run_dag("shift_migration", conf)


def claim_and_run(api=None, script: dict[int, Callable[[], Any]] | None = None) -> list[tuple[str, Any]]:
    """One sensor DAG run, then every shift_migration run it triggered: [(run_id, DagRun)]."""
    sensor_run = run_dag("shift_staged_migrations")
    assert str(sensor_run.state) == "success", f"sensor DAG run ended {sensor_run.state}"
    return [(run_id, run_migration(conf, api, script)) for run_id, conf in queued_migration_runs()]


def spawn_migration_run(conf: dict[str, Any], workdir) -> Any:
    """Run one shift_migration run in its own process (``airflow dags test``), as another worker would (step mode).

    It gets a private copy of the (migrated) metadata database, so it and this
    process never contend for one SQLite file.
    """
    import json
    import subprocess
    from pathlib import Path

    from tests.support.airflow import private_airflow_env

    home = Path(workdir)
    env = private_airflow_env(home)
    log = open(home / "run.log", "wb")  # noqa: SIM115 - owned by the process object
    process = subprocess.Popen(
        [str(Path(__file__).resolve().parents[2] / ".venv/bin/airflow"), "dags", "test", "shift_migration",
         "-c", json.dumps(conf), "--mark-success-pattern", WAITS],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    process.log_path = home / "run.log"
    return process


def claim_only() -> list[tuple[str, dict[str, Any]]]:
    """One sensor DAG run; returns the (run_id, conf) it queued, without running them."""
    sensor_run = run_dag("shift_staged_migrations")
    assert str(sensor_run.state) == "success", f"sensor DAG run ended {sensor_run.state}"
    return queued_migration_runs()


