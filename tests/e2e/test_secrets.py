"""The MariaDB password never leaves the settings file: not in argv, logs, XCom, shift files or the metadata DB.

A full long-run migration (prepare, pt-osc copy, rename) runs through the DAGs
while a thread reads the argv and environment of every process of the test's
process tree every 50 ms; then every
place the runner writes to is searched. The scan must have seen pt-osc's own argv
(dry run and copy), so the test cannot pass by looking too late.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.support.airflow import xcoms
from tests.support.e2e import claim_and_run
from tests.support.mariadb import TEST_PASSWORD
from tests.support.tables import columns_of, create_sample_table

SECRET = TEST_PASSWORD.encode()


class ProcessScanner:
    """Reads /proc/<pid>/cmdline and environ of every process this test started, every ``interval`` seconds."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.ptosc_argvs: set[str] = set()
        self.leaks: list[str] = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-scanner", daemon=True)

    def start(self) -> ProcessScanner:
        self._thread.start()
        return self

    def stop(self) -> ProcessScanner:
        self._stop.set()
        self._thread.join(timeout=10)
        return self

    @property
    def defaults_files_seen(self) -> set[str]:
        """The option files pt-osc was pointed at (``--defaults-file=PATH``)."""
        return {word.split("=", 1)[1] for argv in self.ptosc_argvs for word in argv.split()
                if word.startswith("--defaults-file=")}

    @staticmethod
    def _descendants_of(root: int) -> set[str]:
        """This test's process tree (other engineers' test processes share the machine)."""
        parents = {}
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text()
                except OSError:
                    continue
                parents[pid] = stat.rsplit(")", 1)[1].split()[1]
        tree, grew = {str(root)}, True
        while grew:
            grew = False
            for pid, parent in parents.items():
                if parent in tree and pid not in tree:
                    tree.add(pid)
                    grew = True
        return tree

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self._descendants_of(os.getpid()):
                for part in ("cmdline", "environ"):
                    try:
                        data = Path(f"/proc/{pid}/{part}").read_bytes()
                    except OSError:  # gone, or not ours to read
                        continue
                    if SECRET in data:
                        self.leaks.append(f"/proc/{pid}/{part}: {data[:300]!r}")
                    if part == "cmdline" and b"pt-online-schema-change" in data:
                        self.ptosc_argvs.add(data.replace(b"\0", b" ").decode(errors="replace"))
            self.scans += 1
            self._stop.wait(self.interval)


def files_containing_secret(root: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and SECRET in path.read_bytes():
                found.append(str(path))
        except OSError:
            continue
    return found


@pytest.fixture
def e2e(airflow_home, shift_api, shift_settings, primary, database):
    return shift_api, shift_settings(prefer_instant_ddl=False)  # pt-osc copies the rows: its argv is watched


def test_password_never_appears_during_a_full_long_run(e2e, primary, database, capfd, airflow_home,
                                                       tmp_path, monkeypatch):
    api, settings = e2e
    settings_file = Path(os.environ["SHIFT_CONFIG"])
    assert files_containing_secret(settings_file.parent) == [str(settings_file)], "the scan must find it there"
    # A private temp directory: another test worker's pt-osc run has its own defaults file in the shared /tmp.
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))

    create_sample_table(primary, database, "t", 20000)
    mid = api.create(ddl="ALTER TABLE t ADD COLUMN secretless INT", database=database,
                     final_insert="INSERT INTO t (name, amount, created) VALUES ('final', 1, '2021-01-01')")["id"]
    scanner = ProcessScanner().start()
    runs = []
    try:
        runs += claim_and_run()
        assert api.human("approve", mid, runtype="long").status_code == 200
        assert api.human("start", mid).status_code == 200
        runs += claim_and_run()
        assert api.migration(mid)["status"] == 4
        assert api.human("rename", mid).status_code == 200
        runs += claim_and_run()
    finally:
        time.sleep(0.2)
        scanner.stop()
    assert [str(run.state) for _, run in runs] == ["success"] * 3
    assert api.migration(mid)["status"] == 8 and "secretless" in columns_of(primary, database, "t")

    # The scan really watched pt-osc: its dry run and its copy, each with the defaults file first.
    assert scanner.scans > 20
    assert any("--dry-run" in argv for argv in scanner.ptosc_argvs), scanner.ptosc_argvs
    assert any("--execute" in argv for argv in scanner.ptosc_argvs), scanner.ptosc_argvs
    runs_of_ptosc = [argv for argv in scanner.ptosc_argvs if "--alter" in argv]
    assert runs_of_ptosc and all("--defaults-file=" in argv or "F=" in argv for argv in runs_of_ptosc), runs_of_ptosc
    assert scanner.leaks == []

    # Everything the runner wrote: task logs and captured output, XCom, the shift files, the log dir.
    out, err = capfd.readouterr()
    assert "pt-online-schema-change" in out + err  # the captured output is the task log
    assert TEST_PASSWORD not in out + err
    assert files_containing_secret(airflow_home) == []  # task logs and the metadata DB (XCom, rendered fields)
    for _, run in runs:
        assert TEST_PASSWORD not in repr(xcoms(run))
    log_file = api.request("GET", "migrations/get_file", params={"migration_id": mid, "file_type": 0}).json()
    state_file = api.request("GET", "migrations/get_file", params={"migration_id": mid, "file_type": 1}).json()
    assert "Copying" in log_file["contents"] and state_file["contents"]
    assert TEST_PASSWORD not in log_file["contents"] + state_file["contents"]
    shift_log_dir = Path(settings.migration_log_dir(mid))
    assert list(shift_log_dir.iterdir()), "the copy keeps its pt-osc output under <log_dir>/id-<id>/"
    assert files_containing_secret(Path(settings.log_dir)) == []
    assert files_containing_secret(api.workdir) == []  # the API's store and server log
    # The 0600 defaults files that did hold it are gone.
    assert scanner.defaults_files_seen, "pt-osc read a private defaults file from the private temp directory"
    assert all(Path(path).is_relative_to(private_tmp) for path in scanner.defaults_files_seen)
    assert list(private_tmp.glob("shift-ptosc-*")) == []
