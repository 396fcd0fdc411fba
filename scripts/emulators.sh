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
# start, stop and status run local/emulators/cli.ts (node bin/emulator.js moto ...).
set -euo pipefail

MOTO_VERSION=5.2.5
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
MOTO_BIN="$VENV/bin/moto_server"

say() { printf 'emulators: %s\n' "$*"; }
die() {
  printf 'emulators: error: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
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

# start, stop and status: the supervisor of the TypeScript side (local/emulators/cli.ts), which starts and
# stops the servers of the tests and `pulse local up` too.
run_node() {
  command -v node >/dev/null 2>&1 || die "node not found (start, stop and status run through node)"
  exec node "$ROOT/bin/emulator.js" moto "$@"
}

main() {
  local cmd="${1:-}"
  [ $# -gt 0 ] && shift
  case "$cmd" in
    install) cmd_install "$@" ;;
    start | stop | status) run_node "$cmd" "$@" ;;
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
