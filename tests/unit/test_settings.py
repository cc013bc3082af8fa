"""Runner settings: the Go runner's keys load unchanged; errors name file, key and problem."""

from __future__ import annotations

import socket

import pytest

from shift_provider.exceptions import SettingsError
from shift_provider.settings import get_settings, load_settings_file, settings_path

GO_RUNNER_YAML = """
mysql_user: runner
mysql_password: hunter2
mysql_cert: /etc/shift/%hostname%.crt
mysql_key: /etc/shift/%hostname%.key
mysql_rootCA: /etc/shift/ca.crt
mysql_defaults_file: /etc/shift/my.cnf
rest_api: https://shift.example/api/v1
rest_cert: /etc/shift/rest.crt
rest_key: /etc/shift/rest.key
log_dir: /var/log/shift
pt_osc_path: /usr/local/bin/pt-online-schema-change
enable_trash: true
pending_drops_db: _pending_drops
log_sync_interval: 10
state_sync_interval: 15
stop_file_path: /tmp/stop
host_override: staging-db
port_override: 3307
database_override: staging
"""


def test_go_runner_yaml_loads_unchanged(tmp_path):
    path = tmp_path / "runner.yaml"
    path.write_text(GO_RUNNER_YAML)
    s = load_settings_file(path)
    host = socket.gethostname()
    assert s.mysql_cert == f"/etc/shift/{host}.crt" and s.mysql_key == f"/etc/shift/{host}.key"
    assert s.rest_api == "https://shift.example/api/v1/"
    assert (s.state_sync_interval, s.port_override, s.database_override) == (15, 3307, "staging")
    assert "hunter2" not in repr(s)


@pytest.mark.parametrize(("text", "message"), [
    ("log_sync_interval: -3", "log_sync_interval"),
    ("rest_api: ftp://x", "rest_api: must start with http"),
    ("port_override: http", "port_override"),
    ("enable_trash: maybe", "enable_trash"),
    ("mysql_usr: typo", "mysql_usr: unknown key"),
    ("- a list", "must hold a mapping"),
    ("key: [unclosed", "not valid YAML"),
])
def test_invalid_settings_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_settings_file(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_environment_picks_the_file_and_shift_config_overrides(monkeypatch, tmp_path):
    monkeypatch.delenv("SHIFT_CONFIG", raising=False)
    for env in ("development", "staging", "production"):
        monkeypatch.setenv("ENVIRONMENT", env)
        assert settings_path().name == f"{env}.yaml"
        assert get_settings().rest_api.endswith("/api/v1/")
    monkeypatch.setenv("ENVIRONMENT", "qa")
    with pytest.raises(SettingsError, match="ENVIRONMENT must be one of"):
        settings_path()
    own = tmp_path / "own.yaml"
    own.write_text("log_dir: /srv/shift\n")
    monkeypatch.setenv("SHIFT_CONFIG", str(own))
    assert get_settings().log_dir == "/srv/shift"
    own.write_text("log_dir: /srv/other\n")
    import os
    os.utime(own, (1, 1))  # a new mtime: the change is picked up
    assert get_settings().log_dir == "/srv/other"


def test_stop_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(f"stop_file_path: {tmp_path / 'stop'}\n")
    s = load_settings_file(path)
    assert not s.stop_requested
    (tmp_path / "stop").touch()
    assert s.stop_requested
