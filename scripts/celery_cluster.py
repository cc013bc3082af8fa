"""The proven production topology on one machine: scheduler, dag-processor, triggerer, api-server,
two Celery workers (Redis broker), PostgreSQL metadata, the reference shift API and two MariaDB clusters.

    .venv/bin/python scripts/celery_cluster.py [--workdir DIR] [--keep]

Starts everything (each component in its own process group, free 127.0.0.1 ports), prints
the addresses and the environment to use with ``airflow``/``shift-client``, and runs until
Ctrl-C or SIGTERM, then stops everything by process group. A component that crashes is
reported and stops the cluster (nothing is restarted). ``stop --workdir DIR`` stops a
cluster whose runner died, from ``DIR/pids.json``. The tests (tests/deployment) start the
same topology through ``tests.support.deployment.Deployment``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.deployment import ADMIN_USER, Deployment  # noqa: E402


def run(args: argparse.Namespace) -> None:
    kwargs = {"keep_workdir": args.keep}
    if args.workdir:
        kwargs["workdir"] = Path(args.workdir)
    deployment = Deployment(**kwargs)
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"[cluster] starting under {deployment.workdir}", flush=True)
    deployment.start()
    print(f"[cluster] up in {deployment.timings['startup']:.0f}s {deployment.timings}", flush=True)
    print(f"[cluster] Airflow UI/API  {deployment.airflow_url} (login: {ADMIN_USER} / {deployment.admin_password})",
          flush=True)
    print(f"[cluster] shift API       {deployment.shift_api.url}", flush=True)
    for name, server in deployment.servers.items():
        print(f"[cluster] cluster {name:<8} 127.0.0.1:{server.port}", flush=True)
    print(f"[cluster] redis broker    {deployment.broker_url}", flush=True)
    print(f"[cluster] metadata DB     {deployment.meta.url()}", flush=True)
    env_file = deployment.workdir / "airflow.env"
    env_file.write_text("".join(f"export {k}={json.dumps(v)}\n" for k, v in sorted(deployment.env.items())
                                if k.startswith(("AIRFLOW", "SHIFT_")) or k == "PYTHONPATH"))
    print(f"[cluster] `source {env_file}` to use the airflow CLI against it; Ctrl-C stops everything", flush=True)
    crashed = False
    try:
        while not stopping and not crashed:
            try:
                deployment.assert_healthy()
            except AssertionError as exc:
                crashed = True
                print(f"[cluster] {exc}", file=sys.stderr, flush=True)
            time.sleep(0.5)
    finally:
        print("[cluster] stopping", flush=True)
        deployment.stop()
        print("[cluster] stopped", flush=True)
    if crashed:
        sys.exit(1)


def stop(args: argparse.Namespace) -> None:
    pids = json.loads((Path(args.workdir) / "pids.json").read_text())
    for name, pid in pids.items():
        sig = signal.SIGINT if name == "metadata-db" else signal.SIGTERM  # PostgreSQL: fast shutdown
        try:
            os.killpg(pid, sig)
            print(f"[cluster] {sig.name} to {name} (process group {pid})")
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 20
    for name, pid in pids.items():
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "stop"])
    parser.add_argument("--workdir", help="where everything lives (default: a new temp directory)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir (logs, data) after stopping")
    parsed = parser.parse_args()
    {"run": run, "stop": stop}[parsed.command](parsed)
