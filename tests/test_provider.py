"""The package is an Airflow provider: installed, registered, listed."""

from __future__ import annotations

import subprocess

from tests.conftest import REPO


def test_airflow_providers_list_shows_the_shift_provider():
    out = subprocess.run([str(REPO / ".venv/bin/airflow"), "providers", "list", "-o", "plain"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "shift-airflow-provider" in out.stdout


def test_provider_info_names_hooks_and_connection_type():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "shift-airflow-provider" in manager.providers
    info = manager.providers["shift-airflow-provider"].data
    assert {"connection-type": "shift_api", "hook-class-name": "shift_provider.hooks.shift_api.ShiftApiHook"} in info["connection-types"]


def test_console_scripts_installed():
    for script in ("shift-api-server", "shift-client"):
        assert (REPO / ".venv/bin" / script).exists()
