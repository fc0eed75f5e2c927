#!/usr/bin/env bash
# python.sh — the Python of the repository: bench/ (the measuring helper of scripts/bench.sh)
# and tests/ (the manifest checks, the fixtures).
#
#   1. lint-clean with ruff, pinned, installed into the virtualenv the manifest checks use
#      (created when missing; pip needs PyPI once);
#   2. the unit tests of bench's pure parts (bench/tests: wrk's output, medians and ranges,
#      ratios and verdicts, the rows and the report against recorded runs), with the
#      standard library's unittest.
#
# Usage: tests/python.sh [-h|--help]
# Prints `ok - ...` / `not ok - ...` lines and ends with `N passed, M failed`.
# Environment:
#   VENV     the virtualenv, relative to the repository root [.venv]
#   PYTHON   interpreter that creates it and runs the unit tests [python3]
set -o errexit -o nounset -o pipefail

readonly RUFF_PIN="ruff==0.17.5"

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
# shellcheck source=tests/lib/tap.sh
source "${ROOT}/tests/lib/tap.sh"

usage() { sed -n '2,/^set -o/{/^set -o/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

# ensure_ruff — VENV/bin/ruff at RUFF_PIN's version (the virtualenv created when missing).
ensure_ruff() {
  if [[ ! -x "${VENV}/bin/python" ]]; then
    note "creating virtualenv ${VENV}"
    "${PYTHON}" -m venv "${VENV}" || return 1
  fi
  if [[ "$("${VENV}/bin/ruff" --version 2>/dev/null)" != "ruff ${RUFF_PIN#ruff==}" ]]; then
    note "installing ${RUFF_PIN} into ${VENV}"
    "${VENV}/bin/pip" install --quiet --disable-pip-version-check "${RUFF_PIN}" || return 1
  fi
}

# run_shown COMMAND... — COMMAND's status; its output shown as `#   ` lines when it fails.
run_shown() {
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if ((rc != 0)); then
    printf '%s\n' "${out}" | tail -n 40 | sed 's/^/#   /'
  fi
  UNITTEST_LINE=$(grep -E '^Ran [0-9]+ tests?' <<<"${out}" || true)
  return "${rc}"
}

main() {
  case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") ;;
    *) printf 'python.sh: unknown argument: %s\n' "$1" >&2; exit 2 ;;
  esac
  cd -- "${ROOT}"
  VENV=${VENV:-.venv} PYTHON=${PYTHON:-python3}
  if ensure_ruff; then
    check "ruff check bench tests (${RUFF_PIN})" run_shown "${VENV}/bin/ruff" check bench tests
  else
    not_ok "${RUFF_PIN} installs into ${VENV} (pip install needs PyPI)"
  fi
  UNITTEST_LINE=""
  if run_shown "${PYTHON}" -m unittest discover -s bench/tests -t . &&
    [[ "${UNITTEST_LINE}" =~ ^Ran\ [1-9] ]]; then
    ok "the unit tests of bench/ pass (${UNITTEST_LINE})"
  else
    not_ok "the unit tests of bench/ pass (${UNITTEST_LINE:-see above})"
  fi
  tap_summary
}

main "$@"
