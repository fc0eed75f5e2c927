#!/usr/bin/env bash
# tap.sh — how the test files report (sourced): one `ok - WHAT` / `not ok - WHAT` line per
# check, `# ...` comment lines, and a closing `N passed, M failed` line.
#
#   ok WHAT / not_ok WHAT [DETAIL...]   one result (each DETAIL a `#   ` line under it)
#   check WHAT COMMAND [ARG...]         ok when COMMAND succeeds, else not ok
#   all CMD [ARG...] [-- CMD ...]...    for check: true when every command holds, in order
#   same A B                            for check: A and B are the same string
#   note TEXT...                        one `# TEXT` line each
#   tap_summary                         `N passed, M failed`; returns 1 when a check failed
# shellcheck shell=bash

PASSED=0
FAILED=0

ok() {
  PASSED=$((PASSED + 1))
  printf 'ok - %s\n' "$1"
}
not_ok() {
  FAILED=$((FAILED + 1))
  printf 'not ok - %s\n' "$1"
  shift
  if (($# > 0)); then printf '#   %s\n' "$@"; fi
}
check() {
  local what=$1
  shift
  if "$@"; then ok "${what}"; else not_ok "${what}"; fi
}
note() { printf '# %s\n' "$@"; }
all() {
  local -a cmd=()
  while (($#)); do
    if [[ "$1" == -- ]]; then
      "${cmd[@]}" || return 1
      cmd=()
    else
      cmd+=("$1")
    fi
    shift
  done
  ((${#cmd[@]} == 0)) || "${cmd[@]}"
}
same() { [[ "$1" == "$2" ]]; }
tap_summary() {
  printf '%d passed, %d failed\n' "${PASSED}" "${FAILED}"
  ((FAILED == 0))
}
