#!/usr/bin/env bash
# The moto server (S3, SQS, DynamoDB on 127.0.0.1) used by the offline run and the integration tests.
#
#   bash scripts/emulators.sh install        # create .venv and install moto[server] into it (idempotent)
#   bash scripts/emulators.sh start [PORT]   # start moto in the background (default port 5000, or $MOTO_PORT)
#   bash scripts/emulators.sh stop           # stop the server this script started (and nothing else)
#   bash scripts/emulators.sh status         # running or not; exits 1 when not running
#
# Environment: PYTHON (interpreter that creates the venv, default python3), MOTO_PORT.
# State lives in the git-ignored .pulse/ folder: .pulse/run/moto.pid, .pulse/run/moto.port, .pulse/log/moto.log.
set -euo pipefail

MOTO_VERSION=5.2.5
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
MOTO_BIN="$VENV/bin/moto_server"
RUN_DIR="$ROOT/.pulse/run"
LOG_DIR="$ROOT/.pulse/log"
PID_FILE="$RUN_DIR/moto.pid"
PORT_FILE="$RUN_DIR/moto.port"
LOG_FILE="$LOG_DIR/moto.log"
HOST=127.0.0.1

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
say() { printf 'emulators: %s\n' "$*"; }
die() {
  printf 'emulators: error: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

installed_version() {
  "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || true
}

cmd_install() {
  local python="${PYTHON:-python3}"
  if [ ! -x "$VENV/bin/python" ]; then
    if [ -e "$VENV" ]; then
      die "$VENV exists but has no working bin/python (was Python moved or upgraded?). Remove it (rm -rf .venv) and run: bash scripts/emulators.sh install"
    fi
    command -v "$python" >/dev/null 2>&1 ||
      die "'$python' not found. moto needs Python >= 3.9: install Python 3 (with its venv module), or set PYTHON=/path/to/python3, then run: bash scripts/emulators.sh install"
    "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' ||
      die "moto $MOTO_VERSION needs Python >= 3.9; '$python' is $("$python" --version 2>&1). Set PYTHON=/path/to/python3.x"
    say "creating .venv with $("$python" --version 2>&1)"
    "$python" -m venv "$VENV" ||
      die "could not create .venv with '$python -m venv' (on Debian/Ubuntu: apt-get install python3-venv), then run: bash scripts/emulators.sh install"
  fi

  local have
  have="$(installed_version)"
  if [ -x "$MOTO_BIN" ] && [ "$have" = "$MOTO_VERSION" ]; then
    say "moto $MOTO_VERSION already installed ($MOTO_BIN)"
    return 0
  fi
  if [ -n "$have" ]; then
    say "replacing moto $have with $MOTO_VERSION"
  fi
  say "installing moto[server]==$MOTO_VERSION into .venv (takes about half a minute)..."
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" ||
    die "pip could not install moto[server]==$MOTO_VERSION into .venv (network, or a PyPI mirror via PIP_INDEX_URL?)"
  [ -x "$MOTO_BIN" ] || die "pip finished but $MOTO_BIN is missing"
  say "moto $(installed_version) installed ($MOTO_BIN)"
}

# Prints the pid in the pid file if that process is alive and is a moto server; nothing otherwise.
our_pid() {
  [ -f "$PID_FILE" ] || return 0
  local pid
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null && ps -o args= -p "$pid" 2>/dev/null | grep -q moto_server; then
    echo "$pid"
  fi
}

# Exits 0 once GET /moto-api/ answers 200, 1 when the process died, 2 on timeout.
wait_ready() {
  "$VENV/bin/python" - "$1" "$2" "$3" <<'PY'
import os, sys, time, urllib.request
url, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.05)
sys.exit(2)
PY
}

# True if something already answers HTTP on the port.
port_busy() {
  "$VENV/bin/python" - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
}

cmd_start() {
  local port="${1:-${MOTO_PORT:-5000}}"
  [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "not a port: $port"
  [ -x "$MOTO_BIN" ] || die "moto is not installed ($MOTO_BIN is missing). Run: bash scripts/emulators.sh install"

  local pid
  pid="$(our_pid)"
  if [ -n "$pid" ]; then
    local running_port
    running_port="$(cat "$PORT_FILE" 2>/dev/null || echo '?')"
    say "moto already running: pid $pid, http://$HOST:$running_port"
    if [ "$running_port" != "$port" ] && [ $# -gt 0 ]; then
      say "(not starting a second one on port $port: run 'bash scripts/emulators.sh stop' first)"
    fi
    return 0
  fi
  if port_busy "$port"; then
    die "port $port on $HOST is already in use by another process. Choose another: bash scripts/emulators.sh start PORT"
  fi

  mkdir -p "$RUN_DIR" "$LOG_DIR"
  printf '\n=== %s moto_server -H %s -p %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$HOST" "$port" >>"$LOG_FILE"
  # moto through our launcher (scripts/moto_server.py): fast, isolated TransactWriteItems; scans and sends
  # that do not slow down as a table or queue grows.
  nohup "$VENV/bin/python" "$ROOT/scripts/moto_server.py" -H "$HOST" -p "$port" >>"$LOG_FILE" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PID_FILE"
  echo "$port" >"$PORT_FILE"

  local started=$SECONDS rc=0
  wait_ready "http://$HOST:$port/moto-api/" "$pid" 30 || rc=$?
  case "$rc" in
    0) say "moto running: pid $pid, http://$HOST:$port (log: .pulse/log/moto.log, ready in $((SECONDS - started))s)" ;;
    1)
      rm -f "$PID_FILE" "$PORT_FILE"
      tail -n 15 "$LOG_FILE" >&2 || true
      die "moto exited during start-up (see .pulse/log/moto.log)"
      ;;
    *)
      kill "$pid" 2>/dev/null || true
      rm -f "$PID_FILE" "$PORT_FILE"
      die "moto did not answer on http://$HOST:$port/moto-api/ within 30 s (see .pulse/log/moto.log)"
      ;;
  esac
}

cmd_stop() {
  local pid
  pid="$(our_pid)"
  if [ -z "$pid" ]; then
    rm -f "$PID_FILE" "$PORT_FILE"
    say "moto not running (no live server in .pulse/run/moto.pid)"
    return 0
  fi
  stop_pid "$pid" 5
  rm -f "$PID_FILE" "$PORT_FILE"
  say "moto stopped (pid $pid)"
}

cmd_status() {
  local pid version
  version="$(installed_version)"
  if [ -z "$version" ]; then
    say "moto not installed (run: bash scripts/emulators.sh install)"
  fi
  pid="$(our_pid)"
  if [ -n "$pid" ]; then
    say "moto ${version:-?} running: pid $pid, http://$HOST:$(cat "$PORT_FILE" 2>/dev/null || echo '?')"
    return 0
  fi
  [ -n "$version" ] && say "moto $version installed, not running"
  return 1
}

main() {
  local cmd="${1:-}"
  [ $# -gt 0 ] && shift
  case "$cmd" in
    install) cmd_install "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    -h | --help | help)
      usage
      ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
