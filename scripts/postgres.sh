#!/usr/bin/env bash
# A PostgreSQL 15 server of the project's own, for the db-poller's offline run and integration tests.
#
#   bash scripts/postgres.sh install        # PostgreSQL 15 binaries (apt, when missing) + initdb (idempotent)
#   bash scripts/postgres.sh start [PORT]   # start in the background on 127.0.0.1 (default 55432, or $PG_PORT)
#   bash scripts/postgres.sh stop           # stop the server of this data folder (and nothing else)
#   bash scripts/postgres.sh status         # running or not; exits 1 when not running
#
# Data folder .pulse/postgres/data (git-ignored), log .pulse/log/postgres.log, socket .pulse/postgres/run.
# Trust authentication on 127.0.0.1 only: a test database, never a real one. Connect with
#   psql postgres://postgres@127.0.0.1:55432/postgres
# The server refuses to run as root: when run as root, this script runs it as the `postgres` user.
# Environment: PG_PORT, PG_BIN (folder holding initdb/postgres; default /usr/lib/postgresql/15/bin).
# start, stop and status run local/emulators/cli.ts (node bin/emulator.js postgres ...).
set -euo pipefail

PG_MAJOR=15
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="$ROOT/.pulse/postgres"
DATA="$BASE/data"
RUN_DIR="$BASE/run"
LOG_DIR="$ROOT/.pulse/log"
LOG_FILE="$LOG_DIR/postgres.log"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}"

say() { printf 'postgres: %s\n' "$*"; }
die() {
  printf 'postgres: error: %s\n' "$*" >&2
  exit 1
}
usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

# Runs a command as the server's owner: `postgres` when we are root, ourselves otherwise.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

binaries_present() { [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] && [ -x "$PG_BIN/postgres" ]; }

cmd_install() {
  if ! binaries_present; then
    [ "$(id -u)" -eq 0 ] ||
      die "PostgreSQL $PG_MAJOR is not installed ($PG_BIN/initdb missing). As root: apt-get install -y postgresql-$PG_MAJOR (or set PG_BIN)"
    command -v apt-get >/dev/null 2>&1 ||
      die "PostgreSQL $PG_MAJOR is not installed and apt-get is not available; install it, or set PG_BIN to its bin folder"
    say "installing postgresql-$PG_MAJOR with apt-get..."
    # The package's own cluster (pg_createcluster main) is not used; ours lives in $DATA.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "postgresql-$PG_MAJOR" >/dev/null ||
      { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "postgresql-$PG_MAJOR" >/dev/null; } ||
      die "apt-get could not install postgresql-$PG_MAJOR"
    binaries_present || die "postgresql-$PG_MAJOR installed, but $PG_BIN/initdb is still missing"
  fi
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "there is no 'postgres' user to run the server as (the Debian package creates it)"
  fi
  mkdir -p "$BASE" "$RUN_DIR" "$LOG_DIR"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$BASE" "$RUN_DIR"
    # The log file is written by the server: let its owner write it.
    touch "$LOG_FILE" && chown postgres: "$LOG_FILE"
  fi
  if [ -f "$DATA/PG_VERSION" ]; then
    say "data folder already initialised ($DATA, PostgreSQL $(cat "$DATA/PG_VERSION"))"
    return 0
  fi
  say "initdb $DATA"
  as_owner "$PG_BIN/initdb" -D "$DATA" --username=postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
    --no-instructions >/dev/null || die "initdb failed"
}

# start, stop and status: the supervisor of the TypeScript side (local/emulators/cli.ts), which starts and
# stops the servers of the tests and `pulse local up` too; start runs `install` above first.
run_node() {
  command -v node >/dev/null 2>&1 || die "node not found (start, stop and status run through node)"
  exec node "$ROOT/bin/emulator.js" postgres "$@"
}

case "${1:-}" in
install) cmd_install ;;
start) run_node start ${2:+"$2"} ;;
stop | status) run_node "$1" ;;
-h | --help | help) usage ;;
*)
  usage >&2
  exit 2
  ;;
esac
