#!/usr/bin/env bash
# Install what shift-airflow needs on a fresh Debian machine, idempotently:
# the Debian packages (MariaDB, Percona Toolkit, the mysqlclient build deps, Redis and
# PostgreSQL for the multi-worker deployment tests, chromium and chromium-driver for the
# headless-browser test of the console) and a virtualenv at .venv with the pinned Python packages.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
UV_VERSION="0.13.9"
APT_PACKAGES=(mariadb-server mariadb-client percona-toolkit pkg-config libmariadb-dev python3-venv redis-server postgresql chromium chromium-driver)

log() { printf '[bootstrap] %s\n' "$*" >&2; }

missing_packages() {
    local p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || printf '%s\n' "$p"
    done
}

install_apt_packages() {
    local missing
    missing=$(missing_packages | tr '\n' ' ')
    [ -z "${missing// }" ] && return 0
    local sudo=""
    if [ "$(id -u)" != "0" ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo -n"
        else
            log "missing Debian packages: $missing"
            log "install them as root: apt-get install -y $missing"
            exit 1
        fi
    fi
    log "installing Debian packages: $missing"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # The mariadb-server postinst starts a system server; we never use it, our
    # servers are private ones on loopback ports started by the project.
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

install_venv() {
    local stamp="$VENV/.bootstrap-stamp"
    local want
    want=$(cat "$ROOT/requirements/requirements.lock" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/airflow" ]; then
        return 0
    fi
    log "creating the virtualenv at .venv with pinned packages"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
    # Bytecode compiled now: uv does not by default, and where PYTHONDONTWRITEBYTECODE is set no
    # process caches it, so every Airflow process (each test, task, scheduler) would compile its
    # ~2000 modules again (about 2 CPU-s each time).
    "$VENV/bin/uv" pip install -q --compile-bytecode --python "$VENV/bin/python" -r "$ROOT/requirements/requirements.lock"
    "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps -e "$ROOT"
    echo "$want" > "$stamp"
}

# The project's own modules compiled too (only what changed since; a stale one is recompiled in memory).
compile_project() {
    "$VENV/bin/python" -m compileall -q -j 0 "$ROOT/plugins" "$ROOT/dags" "$ROOT/tests" "$ROOT/scripts" >/dev/null
}

install_apt_packages
install_venv
compile_project
log "ready: $(basename "$VENV") with $("$VENV/bin/python" -c 'import airflow; print("airflow", airflow.__version__)'), $(pt-online-schema-change --version 2>/dev/null | head -1)"
