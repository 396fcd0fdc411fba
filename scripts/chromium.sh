#!/usr/bin/env bash
# Debian's chromium, the browser the dashboard's browser test drives (through playwright-core, which
# downloads no browser of its own).
#
#   bash scripts/chromium.sh install   # apt-get install chromium when it is missing (idempotent); prints the version
#   bash scripts/chromium.sh version   # prints the version; exits 1 when chromium is missing
#
# Installing needs root (CI and the project's machines run as root) and Debian's package lists.
set -euo pipefail

say() { printf 'chromium: %s\n' "$*"; }
die() {
  printf 'chromium: error: %s\n' "$*" >&2
  exit 1
}
usage() { sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

cmd_version() {
  command -v chromium >/dev/null 2>&1 || die "chromium is not installed: bash scripts/chromium.sh install"
  say "$(chromium --version 2>/dev/null) ($(command -v chromium))"
}

cmd_install() {
  if ! command -v chromium >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || die "chromium is not installed. As root: apt-get install -y chromium"
    command -v apt-get >/dev/null 2>&1 || die "chromium is not installed and apt-get is not available; install chromium"
    say "installing chromium with apt-get (takes a minute or two)..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null ||
      { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null; } ||
      die "apt-get could not install chromium"
    command -v chromium >/dev/null 2>&1 || die "chromium installed, but 'chromium' is still not on PATH"
  fi
  cmd_version
}

case "${1:-}" in
install) cmd_install ;;
version) cmd_version ;;
-h | --help | help | "") usage ;;
*)
  usage >&2
  exit 2
  ;;
esac
