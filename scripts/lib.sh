# Shared by scripts/emulators.sh and scripts/kafka.sh (sourced, not run).

# stop_pid PID SECONDS: SIGTERM, wait up to SECONDS for the process to end (a zombie, exited but not
# yet reaped, counts as ended), then SIGKILL. Only ever called with a pid from our own pid file.
stop_pid() {
  local pid=$1 seconds=$2
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((seconds * 10))); do
    kill -0 "$pid" 2>/dev/null || return 0
    [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" = Z ] && return 0
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null && [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" != Z ]; then
    printf 'pid %s did not stop within %s s: killing it\n' "$pid" "$seconds" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
}
