#!/usr/bin/env bash
# bench-smoke.sh — a smoke run of scripts/bench.sh: it runs to the end and prints a
# well-formed table. No timing is asserted here: the timing goals live in the bench output
# (ok / MISSED), not in tests.
#
# Runs `scripts/bench.sh --quick --no-image --write-results` against a tiny peer (a python3
# server, tests/fixtures/peer.py, so that the --compare path and the ratio column are
# exercised without Go), with --write-results aimed at a scratch copy of RESULTS.md. About
# a minute.
#
# Usage: tests/bench-smoke.sh [-h|--help]
#
# Environment:
#   BENCH_SMOKE_ARGS   extra arguments for bench.sh, e.g. "" to include the image and the
#                      container rows (needs podman) [--no-image]
#   BENCH_SMOKE_TIMEOUT  seconds the bench run may take [85]
#   (bench.sh's own variables — PODMAN_*, CARGO, IMAGE — are passed through)
#
# Prints one `ok - …` / `not ok - …` line per check and ends with `N passed, M failed`;
# exits 1 when a check failed, 2 on bad arguments.
set -o errexit -o nounset -o pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly BENCH="${ROOT}/scripts/bench.sh"
readonly HEADER='| measure | hello-path-rs (median, min–max) | peer | ratio | target | verdict |'

readonly PEER="${ROOT}/tests/fixtures/peer.py"
# shellcheck source=tests/lib/tap.sh
source "${ROOT}/tests/lib/tap.sh"
WORK=""

usage() { sed -n '2,/^set -o/{/^set -o/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

cleanup() {
  if [[ -n "${WORK}" && -d "${WORK}" ]]; then rm -rf -- "${WORK}"; fi
}

# The markdown table of the report: every line starting with "|".
table() { grep '^|' "${WORK}/out.md" || true; }

help_works() {
  local out
  out=$("${BENCH}" --help) && grep -q -- '--compare' <<<"${out}"
}

has_header() {
  grep -qxF -- "${HEADER}" "${WORK}/out.md" && grep -qxF '|---|---|---|---|---|---|' "${WORK}/out.md"
}

no_peer_left() { ! pgrep -f -- "${PEER}" >/dev/null; }

rows_have_six_cells() {
  local line n bad=0
  while IFS= read -r line; do
    n=$(awk -F'|' '{ print NF - 2 }' <<<"${line}")
    if [[ "${n}" != 6 ]]; then
      printf '#   %s cells: %s\n' "${n}" "${line}"
      bad=1
    fi
  done < <(table)
  return "${bad}"
}

has_row() { table | grep -qF -- "| $1"; }

verdicts_known() {
  # The verdict cell (the last one) is empty, ok, MISSED or n/a (…).
  ! table | tail -n +3 | awk -F'|' '{ print $(NF - 1) }' |
    grep -vE '^ *(ok|MISSED|n/a[^|]*)? *$'
}

peer_figures() {
  table | grep -F '| idle RSS |' | awk -F'|' '{ exit !($4 !~ /—/ && $5 ~ /×/) }'
}

results_spliced() {
  local f="${WORK}/RESULTS.md"
  grep -qF 'hand-written findings stay' "${f}" &&
    [[ "$(grep -c 'bench.sh:begin' "${f}")" == 1 ]] &&
    [[ "$(grep -c 'bench.sh:end' "${f}")" == 1 ]] &&
    grep -qF -- "${HEADER}" "${f}"
}

main() {
  case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") ;;
    *) printf 'bench-smoke: unknown argument: %s\n' "$1" >&2; exit 2 ;;
  esac
  trap cleanup EXIT
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-smoke.XXXXXX")

  check "bench.sh --help exits 0 and shows the usage" help_works
  local rc=0
  "${BENCH}" --bogus >/dev/null 2>&1 || rc=$?
  if [[ "${rc}" == 2 ]]; then ok "an unknown argument exits 2"; else not_ok "an unknown argument exits 2" "exit ${rc}"; fi
  rc=0
  "${BENCH}" --compare >/dev/null 2>&1 || rc=$?
  if [[ "${rc}" == 2 ]]; then ok "--compare without a command exits 2"; else not_ok "--compare without a command exits 2" "exit ${rc}"; fi

  printf '# Benchmark results\n\n## Findings\n\nhand-written findings stay\n' >"${WORK}/RESULTS.md"
  local -a extra
  read -r -a extra <<<"${BENCH_SMOKE_ARGS---no-image}"
  local started=${SECONDS}
  rc=0
  BENCH_RESULTS="${WORK}/RESULTS.md" timeout "${BENCH_SMOKE_TIMEOUT:-85}" \
    "${BENCH}" --quick --write-results --compare "${PEER}" "${extra[@]}" \
    >"${WORK}/out.md" 2>"${WORK}/err.txt" || rc=$?
  if [[ "${rc}" == 0 ]]; then
    ok "bench.sh --quick --compare ran to the end in $((SECONDS - started)) s"
  else
    not_ok "bench.sh --quick --compare ran to the end (exit ${rc} after $((SECONDS - started)) s)" \
      "$(tail -n 15 "${WORK}/err.txt" | tr '\n' '|')"
  fi

  check "the table has its header and separator" has_header
  check "every table row has 6 cells" rows_have_six_cells
  local row
  for row in "binary size" "start → first 200 OK" "idle RSS" "idle CPU per 10 s" \
    "requests/s, 100 conns, logging on" "p99 latency, 100 conns, logging off" \
    "RSS, 1000 idle keep-alive conns" "threads after they close" \
    "idle wake-ups per second" "idle wake-ups per second, --reload --mysecret-file" \
    "reload: kubelet swap → in use (file watch)" \
    "reload: kubelet swap → in use, --watch-interval 1h (the watch alone)" \
    "reload: swap + SIGHUP → in use (--watch=false)" \
    "reload: swap + POST /-/reload → in use (--watch=false)" "fd exhaustion" \
    "context switches per request, 100 conns, logging on"; do
    check "the table has a row: ${row}" has_row "${row}"
  done
  check "verdicts are ok, MISSED, n/a or empty" verdicts_known
  check "the peer column and the ratio are filled" peer_figures
  check "the exact commands are listed under the table" \
    grep -qE '^wrk -t2 -c100 -d[0-9]+s --latency http://127\.0\.0\.1:PORT/test$' "${WORK}/out.md"
  check "--write-results replaced its block and kept the hand-written text" results_spliced
  check "no server is left running" no_peer_left

  tap_summary
}

main "$@"
