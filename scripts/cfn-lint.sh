#!/usr/bin/env bash
# cfn-lint (pinned) over the synthesized CloudFormation templates.
#
#   bash scripts/cfn-lint.sh install   # install cfn-lint==CFN_LINT_VERSION into .venv (idempotent; creates .venv if missing)
#   bash scripts/cfn-lint.sh shapes    # synthesize every shape of the stack into cdk.out-shapes/<shape>/ (tools/synth-shapes.ts)
#   bash scripts/cfn-lint.sh run       # lint cdk.out/*.template.json and cdk.out-shapes/*/*.template.json
#                                      # (run `npm run synth` and `shapes` first); fails on an error or a warning
#   npm run lint:cfn                   # install, shapes, run (what .ci/run does, after `npm run synth`)
#
# Configuration (rules ignored, each with its reason) is in .cfnlintrc at the repository root.
# Environment: PYTHON (interpreter that creates .venv when it does not exist, default python3).
set -euo pipefail

CFN_LINT_VERSION=1.58.0
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
CFN_LINT_BIN="$VENV/bin/cfn-lint"

say() { printf 'cfn-lint: %s\n' "$*"; }
die() {
  printf 'cfn-lint: error: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

installed_version() {
  "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("cfn-lint"))' 2>/dev/null || true
}

cmd_install() {
  if [ ! -x "$VENV/bin/python" ]; then
    [ -e "$VENV" ] &&
      die "$VENV exists but has no working bin/python. Remove it (rm -rf .venv) and run: bash scripts/emulators.sh install"
    local python="${PYTHON:-python3}"
    command -v "$python" >/dev/null 2>&1 ||
      die "'$python' not found: install Python 3 (>= 3.9, with venv) or set PYTHON=/path/to/python3"
    say "creating .venv with $("$python" --version 2>&1)"
    "$python" -m venv "$VENV" || die "could not create .venv with '$python -m venv' (on Debian/Ubuntu: apt-get install python3-venv)"
  fi
  local have
  have="$(installed_version)"
  if [ -x "$CFN_LINT_BIN" ] && [ "$have" = "$CFN_LINT_VERSION" ]; then
    say "cfn-lint $CFN_LINT_VERSION already installed ($CFN_LINT_BIN)"
    return 0
  fi
  [ -n "$have" ] && say "replacing cfn-lint $have with $CFN_LINT_VERSION"
  say "installing cfn-lint==$CFN_LINT_VERSION into .venv..."
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "cfn-lint==$CFN_LINT_VERSION" ||
    die "pip could not install cfn-lint==$CFN_LINT_VERSION into .venv (network, or a PyPI mirror via PIP_INDEX_URL?)"
  [ -x "$CFN_LINT_BIN" ] || die "pip finished but $CFN_LINT_BIN is missing"
  say "cfn-lint $(installed_version) installed ($CFN_LINT_BIN)"
}

cmd_run() {
  [ -x "$CFN_LINT_BIN" ] || die "cfn-lint is not installed. Run: bash scripts/cfn-lint.sh install"
  local have
  have="$(installed_version)"
  [ "$have" = "$CFN_LINT_VERSION" ] ||
    die "cfn-lint $have is installed, the pinned version is $CFN_LINT_VERSION. Run: bash scripts/cfn-lint.sh install"
  shopt -s nullglob
  local templates=("$ROOT"/cdk.out/*.template.json)
  [ ${#templates[@]} -gt 0 ] || die "no cdk.out/*.template.json. Run: npm run synth"
  # Every shape the construct is linted in (issue 22): default, existing buckets (SQS, EventBridge, SNS),
  # two prefixes with different mappings, database and Kafka sources, two stages in one app.
  local shapes=("$ROOT"/cdk.out-shapes/*/*.template.json)
  [ ${#shapes[@]} -gt 0 ] || die "no cdk.out-shapes/*/*.template.json. Run: bash scripts/cfn-lint.sh shapes"
  templates+=("${shapes[@]}")
  cd "$ROOT"
  say "cfn-lint $have over ${#templates[@]} templates: ${templates[*]#"$ROOT/"}"
  # Exit code is non-zero on an error or a warning (informational findings are printed only).
  "$CFN_LINT_BIN" --non-zero-exit-code warning -- "${templates[@]#"$ROOT/"}"
  say "no errors, no warnings"
}

cmd_shapes() {
  cd "$ROOT"
  npx tsx tools/synth-shapes.ts "$@" || die "synthesizing the shapes failed (tools/synth-shapes.ts)"
}

main() {
  local cmd="${1:-}"
  [ $# -gt 0 ] && shift
  case "$cmd" in
    install) cmd_install "$@" ;;
    shapes) cmd_shapes "$@" ;;
    run) cmd_run "$@" ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
