"""CI smoke run of the benchmark (scripts/bench.py) at a small size: it runs end to end and reports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_runs_small_and_reports_ratios_and_json(tmp_path):
    out_json = tmp_path / "bench-results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SHIFT_"))}  # its own setup
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--rows", "20000", "--repeat", "1",
                           "--json", str(out_json)], capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    ratio = [line for line in lines if re.fullmatch(r"operator/bare-ptosc: \d+\.\d\d", line)]
    lower = [line for line in lines if re.fullmatch(r"bare-ptosc/alter-copy: \d+\.\d\d", line)]
    assert len(ratio) == 1 and len(lower) == 1, done.stdout[-3000:]
    results = json.loads(out_json.read_text())
    assert results["rows"] == 20000 and results["repeat"] == 1
    checksum = [line for line in lines if re.fullmatch(r"checksum/copy: \d+\.\d\d", line)]
    assert len(checksum) == 1, done.stdout[-3000:]
    for name in ("bare-ptosc", "operator", "alter-copy", "instant", "checksum"):
        assert len(results["runs"][name]) == 1 and results["median_seconds"][name] > 0
    assert abs(results["ratios"]["operator/bare-ptosc"] - float(ratio[0].split(": ")[1])) < 0.01
    extra = results["extra_median"]
    assert 0 < extra["claim_latency_s"] < 10
    assert extra["write_p99_idle_ms"] > 0 and extra["write_p99_checksum_ms"] > 0
    assert extra["operator_peak_rss_mb"] > 50 and extra["operator_cpu_s_per_mrows"] >= 0


def test_waits_bench_runs_small_and_reports_requests_and_claim_latency():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SHIFT_"))}
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_waits.py"), "--waits", "20", "--intervals",
                           "3", "--interval", "0.5"], capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    lines = done.stdout.splitlines()
    assert any(re.fullmatch(r"staged requests in 3 intervals: \d+ .*", line) for line in lines), done.stdout[-3000:]
    assert any(line.startswith("new migration seen by the sensor's trigger") for line in lines), done.stdout
    assert "waits woken by the new migration: 0 (must be 0)" in lines, done.stdout
