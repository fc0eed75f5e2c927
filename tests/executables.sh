#!/usr/bin/env bash
# executables.sh — every script the documentation or a --help text tells people to run can
# be run as they will type it: `scripts/nudge.sh ...`, not `bash scripts/nudge.sh ...`.
#
# Collects every path scripts/NAME.sh, tests/NAME.sh and .ci/run named in README.md,
# k8s/README.md, docs/ and the --help text of every script under scripts/ (the sourced
# libraries under */lib/ excepted), then checks each one:
#   1. it is committed executable (mode 100755 in git's index, when this is a checkout);
#   2. it is executable here and starts with a #! line;
#   3. run directly, as a user types it (`./scripts/nudge.sh --help`), it starts: not
#      "Permission denied" (126) nor "command not found" (127); the scripts under scripts/
#      answer --help with exit 0 and their usage.
#
# Usage: tests/executables.sh        (no options; a few seconds)
# Prints `ok - ...` / `not ok - ...` lines and ends with `N passed, M failed`.
set -o errexit -o nounset -o pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
# shellcheck source=tests/lib/tap.sh
source "${ROOT}/tests/lib/tap.sh"

# named — the runnable paths the documentation and the --help texts name, one per line.
named() {
  local f
  {
    for f in README.md k8s/README.md docs/*.md docs/*/*.md; do
      [[ -f "${ROOT}/${f}" ]] && cat "${ROOT}/${f}"
    done
    for f in "${ROOT}"/scripts/*.sh; do
      "${f}" --help 2>/dev/null || true
    done
  } | grep -oE '(^|[^A-Za-z0-9_./-])(scripts|tests)/[A-Za-z0-9_-]+\.sh|\.ci/run' |
    sed -E 's#^[^st.]##' | sort -u
}

main() {
  (($# == 0)) || {
    printf 'usage: tests/executables.sh (no arguments)\n' >&2
    exit 2
  }
  cd "${ROOT}"
  local -a paths
  mapfile -t paths < <(named)
  check "the documentation and the --help texts name scripts to run (${#paths[@]} found)" \
    test "${#paths[@]}" -ge 10
  local p mode rc out in_git=false
  git -C "${ROOT}" rev-parse --git-dir >/dev/null 2>&1 && in_git=true
  for p in "${paths[@]}"; do
    if [[ ! -f "${p}" ]]; then
      not_ok "${p}: named in the documentation, but there is no such file"
      continue
    fi
    if [[ "${in_git}" == true ]]; then
      mode=$(git ls-files -s -- "${p}" | cut -d' ' -f1)
      check "${p}: committed executable (mode ${mode:-not committed})" test "${mode}" = 100755
    fi
    check "${p}: executable here, with a #! line" \
      test -x "${p}" -a "$(head -c 2 "${p}")" = '#!'
    rc=0
    out=$(timeout 60 "./${p}" --help </dev/null 2>&1) || rc=$?
    case "${p}" in
      scripts/*)
        check "./${p} --help, run as typed: exit ${rc} (0), its usage" \
          test "${rc}" -eq 0 -a -n "$(grep -iE 'usage' <<<"${out}")"
        ;;
      *)
        check "./${p} --help, run as typed: it starts (exit ${rc}: neither 126 nor 127)" \
          test "${rc}" -ne 126 -a "${rc}" -ne 127
        ;;
    esac
  done
  tap_summary
}

main "$@"
