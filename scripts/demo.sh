#!/usr/bin/env bash
# `make demo`: the main job on embedded defaults. `make demo-stop`: stop what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "stop" ]; then
    exec .venv/bin/python scripts/demo.py stop
fi
exec .venv/bin/python scripts/demo.py start
