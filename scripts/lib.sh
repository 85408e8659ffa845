# Shared by the scripts: install what is missing, find the Python the tests use.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
VENV="$CACHE/venv"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PKG... — installs the Debian packages that are not installed yet.
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The system libraries the node links and the Redis server the cluster uses.
install_runtime_deps() {
    apt_install pkg-config redis-server libhiredis-dev libssl-dev libsystemd-dev
}

# A virtualenv with the PyPI test clients (python-socketio, selenium …).
install_python_test_deps() {
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV"
        mkdir -p "$CACHE"
        python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$VENV"; }
    fi
    local stamp="$VENV/.requirements"
    if ! cmp -s "$ROOT/Tests/Live/requirements.txt" "$stamp"; then
        log "installing PyPI test clients"
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
        "$VENV/bin/python" -m pip install -q -r "$ROOT/Tests/Live/requirements.txt"
        cp "$ROOT/Tests/Live/requirements.txt" "$stamp"
    fi
}

# What the deployment files are checked with and scripts/cluster runs: HAProxy, Debian's
# docker-compose (its `config` needs no Docker daemon), curl and ss; systemd-analyze comes with
# systemd. Tests/Live/test_deploy.py also asks apt-cache about the Dockerfile's packages, so the
# package lists must be there.
install_deploy_tools() {
    apt_install haproxy docker-compose curl iproute2 systemd
    if ! compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null; then
        log "fetching the Debian package lists"
        as_root apt-get update -qq
    fi
}

install_browser_deps() {
    apt_install chromium chromium-driver
}

require_swift() {
    command -v swift >/dev/null || { echo "swift is not on PATH: install the Swift toolchain first" >&2; exit 1; }
}
