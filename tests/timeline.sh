#!/usr/bin/env bash
# timeline.sh — the availability timelines of the walkthrough's table fit a terminal of 100
# columns (scripts/lib/probe.sh): a timeline too long for that is compressed, several
# seconds a glyph, each glyph the worst of its seconds, and the legend says how many.
#
#   1. timeline_fit: the worst second of a group wins (all failed, then some failed, then
#      no request, then ok), so that a second with failures never disappears into an ok
#      glyph; a change mark "|" stays before the glyph that holds it; "-" stays "-";
#   2. timeline_scale: the fewest seconds a glyph that fit the width, marks included;
#   3. the table's block (results_timelines) from RESULT/CONTROL lines: unchanged when the
#      timelines fit; with --kube-long ones and names of 20 characters, every line within
#      100 columns, one scale for all rows, said in the legend, and an outage of 2 s in
#      300 still visible; from a probe's own output (probe_timeline) too.
#
# Usage: tests/timeline.sh        (no options; a few seconds)
# Prints `ok - ...` / `not ok - ...` lines and ends with `N passed, M failed`.
set -o errexit -o nounset -o pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
# shellcheck source=tests/lib/tap.sh
source "${ROOT}/tests/lib/tap.sh"
# shellcheck source=scripts/lib/common.sh
source "${ROOT}/scripts/lib/common.sh"
# shellcheck source=scripts/lib/probe.sh
source "${ROOT}/scripts/lib/probe.sh"
WORK=""

cleanup() {
  if [[ -n "${WORK}" && -d "${WORK}" ]]; then rm -rf -- "${WORK}"; fi
}

# fits TIMELINE SCALE WANT — timeline_fit TIMELINE SCALE prints WANT.
fits() {
  local got
  got=$(timeline_fit "$1" "$2")
  [[ "${got}" == "$3" ]] || note "timeline_fit '$1' $2: '${got}', not '$3'"
  [[ "${got}" == "$3" ]]
}

# repeat TEXT N — TEXT N times.
repeat() {
  local out="" i
  for ((i = 0; i < $2; i++)); do out+=$1; done
  printf '%s' "${out}"
}

# widest FILE — the most characters (not bytes) on a line of FILE.
widest() {
  python3 -c 'import sys
print(max((len(l) for l in open(sys.argv[1], encoding="utf-8").read().splitlines()), default=0))' "$1"
}

# result_line NAME TIMELINE — a RESULT line as a scenario prints it (MODE: kube).
result_line() {
  MODE=kube result "$1" 0 100 1.00 0 pod-a ok "$2" a note
}

test_fit() {
  check "scale 1 leaves a timeline as it is" fits '██|▄▁|▄█' 1 '██|▄▁|▄█'
  check "'-' (not measured) stays '-'" fits - 4 -
  check "3 s a glyph: ██▁ ███ → ▁█ (one failed second is the glyph of its group)" \
    fits '██▁███' 3 '▁█'
  check "5 s a glyph: one second with some failures among ten ok ones stays visible" \
    fits '████▄█████' 5 '▄█'
  check "all failed beats some failed; no request beats ok" fits '▄▁█▄ █' 2 '▁▄ '
  check "a change mark stays before the glyph that holds it" fits '██|██' 2 '█|█'
  check "a change inside a group goes before that group's glyph" fits '█|██' 2 '|██'
  check "a change after the last second stays at the end" fits '████|' 2 '██|'
  check "... or before the glyph of the last group when that one is not full" fits '███|' 2 '█|█'
  check "two changes in one group keep both marks" fits '█|▄|█▁' 3 '||▄▁'
  check "a last, shorter group has a glyph too" fits '█████▁▁' 3 '█▁▁'
}

test_scale() {
  check "timelines that fit: scale 1" test "$(timeline_scale 10 '██|▄▁|▄█' - '▁▁')" = 1
  check "25 seconds and a mark in 10 columns: 3 s a glyph (9 glyphs + 1 mark)" \
    test "$(timeline_scale 10 "$(repeat █ 12)|$(repeat █ 13)")" = 3
  check "the longest timeline sets the scale for all" \
    test "$(timeline_scale 10 '██' "$(repeat ▄ 40)")" = 4
}

test_block() {
  local results="${WORK}/results" out="${WORK}/block" width
  {
    result_line no-arg '▁▁'
    result_line reload '▁|▁████'
  } >"${results}"
  results_timelines "${results}" >"${out}"
  check "short timelines: the legend is per second, the rows as measured" \
    test "$(sed -n 2p "${out}")" = "availability per second (${TIMELINE_LEGEND}):" -a \
    "$(sed -n 4p "${out}")" = "  reload          ▁|▁████"

  # A --kube run: the kubelet's sync takes minutes; names as long as the nudge rows'.
  local long outage
  long="$(repeat █ 40)|$(repeat ▁ 89)$(repeat ▄ 5)$(repeat █ 98)"
  outage="$(repeat █ 150)|$(repeat █ 100)▁▁$(repeat █ 48)"
  {
    result_line no-arg "$(repeat ▁ 30)"
    result_line reload-subpath-nudge "${long}"
    result_line rotate-nudge "${outage}"
  } >"${results}"
  results_timelines "${results}" >"${out}"
  sed 's/^/#   /' "${out}"
  width=$(widest "${out}")
  check "long timelines: every line of the block fits 100 columns (widest: ${width})" \
    test "${width}" -le 100
  check "the legend says how many seconds a glyph is (4: 300 s in 77 columns)" \
    grep -qF 'availability per 4 seconds (each glyph the worst of its 4 seconds):' "${out}"
  check "the glyphs' meaning is still spelled out" grep -qxF "  ${TIMELINE_LEGEND}" "${out}"
  check "one scale for every row, names of 20 characters in their column: 30 s of no-arg is 8 glyphs" \
    grep -qxF "$(printf '  %-20s %s' no-arg "$(repeat ▁ 8)")" "${out}"
  check "an outage of 2 s in 300 s of ok still shows as ▁, after the change mark" \
    grep -qxF "$(printf '  %-20s %s' rotate-nudge "$(repeat █ 37)|$(repeat █ 25)▁$(repeat █ 12)")" "${out}"
  check "a glyph over failed and some-failed seconds is ▁, over some-failed and ok ones ▄" \
    grep -qxF "$(printf '  %-20s %s' reload-subpath-nudge "$(repeat █ 10)|$(repeat ▁ 23)▄$(repeat █ 24)")" "${out}"
}

# A probe's own output, as `hello-path-rs probe` prints it: 300 seconds, the service down
# for the two seconds 200 and 201.
test_from_probe() {
  local probe="${WORK}/probe.out" timeline i fitted
  for ((i = 1; i <= 300; i++)); do
    if ((i == 201 || i == 202)); then
      printf 'probe second=%d ok=0 failed=20\n' "${i}"
    else
      printf 'probe second=%d ok=20 failed=0\n' "${i}"
    fi
  done >"${probe}"
  timeline=$(probe_timeline "${probe}" 0 150500)
  fitted=$(timeline_fit "${timeline}" "$(timeline_scale 77 "${timeline}")")
  check "from a probe's output: 300 s fit in 77 columns, the outage and the change kept" \
    test "${fitted}" = "$(repeat █ 37)|$(repeat █ 13)▁$(repeat █ 24)"
}

main() {
  (($# == 0)) || {
    printf 'usage: tests/timeline.sh (no arguments)\n' >&2
    exit 2
  }
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/hello-path-test-timeline.XXXXXX")
  trap cleanup EXIT
  test_fit
  test_scale
  test_block
  test_from_probe
  tap_summary
}

main "$@"
