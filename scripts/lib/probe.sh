#!/usr/bin/env bash
# probe.sh — what a probe measured and how it is reported: the counts and the availability
# timeline from `hello-path-rs probe` output (one `probe second=N ok=A failed=B` line per
# second, locally or from the probe pod), the RESULT and CONTROL lines, and the table that
# scripts/walkthrough.sh prints from them. Pure text: no process, no cluster. Sourced after
# common.sh.
#
# The RESULT line: each scenario script prints exactly one, as its last line on stdout
# (walkthrough.sh parses it). Fields are in this order, separated by one space; values never
# hold spaces, except note, which is last and runs to the end of the line:
#
#   RESULT scenario=NAME mode=local|kube failed=N total=N seconds_to_new=S restarts=N
#          pids=LIST verdict=ok|ok-network|unexpected timeline=GLYPHS failures=KINDS
#          note=FREE TEXT
#
# A CONTROL line has the same fields and reports a negative control run beside the scenario
# (reload's env var and subPath rows); it comes before the RESULT line, whose verdict also
# covers it:   CONTROL scenario=NAME mode=... (as above)
#
#   failed          requests that failed after the service had first answered (requests
#                   before that are "not serving yet", not a disruption); a service that
#                   never answered reports all its requests as failed (failed = total)
#   total           requests counted (from the first answer on, or all if none)
#   seconds_to_new  seconds from the change until the new (or fixed) credential is in use,
#                   e.g. 0.31; "never" when it never was; "-" when there is no change
#   restarts        processes started anew because of the change: locally the processes
#                   started after the first one (app_start counts them in APP_SEQ; nothing
#                   restarts a crashed process here); in a cluster the new pods plus the
#                   container restarts seen (kube_restarts)
#   pids            PIDs (local) or pod names (kube) serving at the end, comma-separated,
#                   "-" when none
#   verdict         ok = the outcome the scenario expects; ok-network = the app did what
#                   was expected, but the cluster's network lost requests that the pods
#                   never saw (network_verdict: every counted failure a connect timeout,
#                   while direct requests to the pods all succeeded; the script exits 0);
#                   unexpected = anything else (the script then exits 1)
#   timeline        availability, one glyph per second (see TIMELINE_LEGEND); "|" marks a
#                   change; "-" when not measured. The table compresses it to fit.
#   failures        the counted failures by kind, as the probe tells them apart:
#                   connect_timeout, refused, reset, http_error, read_timeout, other
#                   (e.g. "connect_timeout:3,refused:1"); "-" when none
# shellcheck shell=bash

if [[ -n "${HELLO_PATH_PROBE_LOADED:-}" ]]; then
  return 0
fi
HELLO_PATH_PROBE_LOADED=1

readonly TIMELINE_LEGEND="█ every request ok · ▄ some failed · ▁ all failed · | the change"
# The width the timeline block of the table fits in (a terminal of 100 columns).
readonly TABLE_COLUMNS=100

# ---------------------------------------------------------------------------------------
# The RESULT and CONTROL lines.

# result SCENARIO FAILED TOTAL SECONDS RESTARTS PIDS VERDICT TIMELINE KINDS NOTE...
#   The scenario's RESULT line: call it once, last.
result() { _result_line RESULT "$@"; }
# control_row ROW FAILED TOTAL SECONDS RESTARTS PIDS VERDICT TIMELINE KINDS NOTE...
#   A negative control's CONTROL line (same fields), printed before the RESULT line.
control_row() { _result_line CONTROL "$@"; }
_result_line() {
  local kind=$1 scenario=$2 failed=$3 total=$4 seconds=$5 restarts=$6 pids=$7 verdict=$8 timeline=$9
  local kinds=${10}
  shift 10
  local note="$*" v
  for v in scenario failed total seconds restarts pids verdict timeline kinds; do
    printf -v "$v" '%s' "${!v// /_}"
    [[ -n "${!v}" ]] || printf -v "$v" '%s' -
  done
  printf '%s scenario=%s mode=%s failed=%s total=%s seconds_to_new=%s restarts=%s pids=%s verdict=%s timeline=%s failures=%s note=%s\n' \
    "${kind}" "${scenario}" "${MODE}" "${failed}" "${total}" "${seconds}" "${restarts}" "${pids}" \
    "${verdict}" "${timeline}" "${kinds}" "${note}"
}

# verdict_ok VERDICT — the scenario went as expected: ok, or ok-network (network_verdict).
verdict_ok() { [[ "$1" == ok || "$1" == ok-network ]]; }

# result_field LINE KEY — the value of KEY= in a RESULT or CONTROL line (note: the rest of
# the line).
result_field() {
  local line=$1 key=$2
  if [[ "${key}" == note ]]; then
    [[ "${line}" == *" note="* ]] && printf '%s\n' "${line#* note=}"
    return 0
  fi
  if [[ " ${line%% note=*} " =~ \ ${key}=([^ ]*)\  ]]; then
    printf '%s\n' "${BASH_REMATCH[1]}"
  fi
}

# ---------------------------------------------------------------------------------------
# Counts and timelines of a probe's output.

# The awk function every reader of a probe's lines uses: second() sets ok and bad from a
# line `probe second=N ok=A failed=B [KIND=N...] [failed_after_ok=N]`, kind[K] the failures
# of kind K in it, and after_ok those on a URL that had answered before.
# shellcheck disable=SC2016 # awk's $i, not the shell's
readonly _PROBE_SECOND_AWK='
  function second() {
    ok = 0; bad = 0; after_ok = 0; delete kind
    for (i = 3; i <= NF; i++) {
      split($i, kv, "=")
      if (kv[1] == "ok") ok = kv[2] + 0
      else if (kv[1] == "failed") bad = kv[2] + 0
      else if (kv[1] == "failed_after_ok") after_ok = kv[2] + 0
      else kind[kv[1]] = kv[2] + 0
    }
  }'
# The kinds in the order the probe lists them (src/probe.rs).
readonly PROBE_KINDS="connect_timeout refused reset http_error read_timeout other"

# probe_counts FILE — prints "FAILED TOTAL SERVED KINDS" from the per-second lines of a
# probe: requests before the first second with an answer do not count (the service was not
# serving yet); SERVED is 1 when anything ever answered. When nothing ever answered, FAILED
# = TOTAL = all requests. KINDS: the counted failures by kind ("connect_timeout:3,reset:1"),
# "-" when none.
probe_counts() {
  awk -v kinds="${PROBE_KINDS}" "${_PROBE_SECOND_AWK}"'
    function add(into,   k) { for (k in kind) into[k] += kind[k] }
    function show(from,   n, i, out) {
      n = split(kinds, order, " "); out = ""
      for (i = 1; i <= n; i++) if (from[order[i]] > 0) out = out (out == "" ? "" : ",") order[i] ":" from[order[i]]
      return out == "" ? "-" : out
    }
    /^probe second=/ {
      second()
      all += ok + bad; allbad += bad; add(allkinds)
      if (ok > 0) served = 1
      if (served) { total += ok + bad; if (!firstsec) firstsec = 1; else { failed += bad; add(counted) } }
    }
    END {
      if (served) printf "%d %d 1 %s\n", failed, total, show(counted)
      else printf "%d %d 0 %s\n", allbad, all, show(allkinds)
    }' "$1"
}

# kinds_words KINDS — KINDS in words: "3 connect timeouts, 1 refused" ("" for "-").
kinds_words() {
  local k n out="" item
  local -A words=([connect_timeout]="connect timeout(s)" [refused]="refused" [reset]="reset or closed"
    [http_error]="HTTP error(s)" [read_timeout]="answer timeout(s)" [other]="other error(s)")
  [[ "$1" != - ]] || return 0
  for item in ${1//,/ }; do
    k=${item%%:*} n=${item#*:}
    out+="${out:+, }${n} ${words[${k}]:-${k}}"
  done
  printf '%s\n' "${out}"
}

# witness_counts FILE — "OK AFTER_OK" of a witness probe (direct requests to the pods, one
#   URL each): the requests that succeeded, and those that failed on a pod after it had
#   answered.
witness_counts() {
  awk "${_PROBE_SECOND_AWK}"'
    /^probe second=/ { second(); okay += ok; after += after_ok }
    END { printf "%d %d\n", okay, after }' "$1"
}

# network_verdict FAILED KINDS WITNESS_FILE — succeeds when the FAILED counted failures of a
#   probe through the Service cannot be the app's: every one a connect timeout (the SYN never
#   answered), while the witness — the same image asking each pod directly, at the same
#   time — saw every pod answer and none fail after it had answered. Then NETWORK_NOTE says
#   so in words. A failure of any other kind, or one the witness saw too, is not excused.
# shellcheck disable=SC2034 # read by the scripts that source this file
NETWORK_NOTE=""
network_verdict() {
  local failed=$1 kinds=$2 witness=$3 ok after
  [[ "${failed}" -gt 0 && "${kinds}" == "connect_timeout:${failed}" && -s "${witness}" ]] || return 1
  read -r ok after < <(witness_counts "${witness}")
  ((ok > 0 && after == 0)) || return 1
  # shellcheck disable=SC2034 # read by the scripts that source this file
  NETWORK_NOTE="the app held, the cluster's network did not: ${failed} request(s) through the Service's ClusterIP got no connection within 1 s (connect timeouts), while the pods, asked directly at the same time, answered ${ok} requests and failed none once they served. Known on k3s: its network policy controller (kube-router) accepts traffic to a Service without endpoints before kube-proxy can reject it, leaving conntrack entries without DNAT for 120 s that a later connection from the same source port reuses (cloudnativelabs/kube-router#1453, kubernetes/kubernetes#48719). To confirm: conntrack -L -p tcp --dport 80 | grep UNREPLIED on the node during the wait, or run k3s with --disable-network-policy"
}

# probe_seconds FILE — how many whole seconds the probe has reported.
probe_seconds() { grep -c '^probe second=' "$1" 2>/dev/null || true; }

# probe_timeline FILE START_MS [CHANGE_MS...] — one glyph per second of the probe, with a
# "|" before the second in which each change happened.
probe_timeline() {
  local file=$1 start=$2
  shift 2
  local marks="" c
  for c in "$@"; do
    marks+="$(((c - start) / 1000)) "
  done
  awk -v marks="${marks}" "${_PROBE_SECOND_AWK}"'
    BEGIN { sec = 0; n = split(marks, m, " "); for (i = 1; i <= n; i++) at[m[i] + 0]++ }
    /^probe second=/ {
      second()
      g = (ok > 0 && bad == 0) ? "█" : (ok > 0 ? "▄" : (bad > 0 ? "▁" : " "))
      while (at[sec] > 0) { out = out "|"; at[sec]-- }
      out = out g; sec++
    }
    END {
      for (k in at) if (k + 0 >= sec) for (j = 0; j < at[k]; j++) out = out "|"
      print (out == "" ? "-" : out)
    }' "${file}"
}

# _timeline_split TIMELINE — TL_TOKENS: its glyphs, one per element ("|" a change, any
# other a second). Byte-exact, whatever the locale (the glyphs are 3 bytes in UTF-8).
_timeline_split() {
  local s=$1 g
  TL_TOKENS=()
  while [[ -n "${s}" ]]; do
    case "${s}" in
      "|"*) g="|" ;;
      "█"*) g="█" ;;
      "▄"*) g="▄" ;;
      "▁"*) g="▁" ;;
      *) g=${s:0:1} ;;
    esac
    TL_TOKENS+=("${g}")
    s=${s#"${g}"}
  done
}

# timeline_scale WIDTH TIMELINE... — the fewest seconds a glyph so that every TIMELINE fits
# in WIDTH columns ("|" marks included): 1 when they fit as they are.
timeline_scale() {
  local width=$1 t tok seconds marks scale=1
  shift
  for t in "$@"; do
    [[ "${t}" != - ]] || continue
    _timeline_split "${t}"
    seconds=0 marks=0
    for tok in "${TL_TOKENS[@]}"; do
      if [[ "${tok}" == "|" ]]; then marks=$((marks + 1)); else seconds=$((seconds + 1)); fi
    done
    while (((seconds + scale - 1) / scale + marks > width && scale < seconds)); do
      scale=$((scale + 1))
    done
  done
  echo "${scale}"
}

# timeline_fit TIMELINE SCALE — TIMELINE with SCALE seconds a glyph: each glyph stands for
# the worst of its seconds (all failed ▁, then some failed ▄, then no request, then every
# request ok █: a second with failures never hides in an ok glyph); a "|" goes before the
# glyph whose seconds hold the change. "-" stays "-".
timeline_fit() {
  local timeline=$1 scale=$2 t out="" marks="" worst="" rank worst_rank=-1 n=0
  if [[ "${timeline}" == - || "${scale}" -le 1 ]]; then
    printf '%s\n' "${timeline}"
    return 0
  fi
  _timeline_split "${timeline}"
  for t in "${TL_TOKENS[@]}"; do
    case "${t}" in
      "|")
        marks+="|"
        continue
        ;;
      "█") rank=0 ;;
      "▄") rank=2 ;;
      "▁") rank=3 ;;
      *) rank=1 ;;
    esac
    if ((rank > worst_rank)); then
      worst=${t} worst_rank=${rank}
    fi
    n=$((n + 1))
    if ((n == scale)); then
      out+="${marks}${worst}" marks="" worst="" worst_rank=-1 n=0
    fi
  done
  printf '%s\n' "${out}${marks}${worst}"
}

# ---------------------------------------------------------------------------------------
# The walkthrough's table.

# results_width RESULTS_FILE — the width of the name column: the longest scenario name of
# the RESULT and CONTROL lines in RESULTS_FILE, 15 at least.
results_width() {
  local line s width=15
  while IFS= read -r line; do
    s=$(result_field "${line}" scenario)
    ((${#s} <= width)) || width=${#s}
  done <"$1"
  echo "${width}"
}

# results_table RESULTS_FILE — the table of the RESULT and CONTROL lines in RESULTS_FILE,
# one row each, in their order, between rules.
results_table() {
  local line s failed total seconds restarts verdict note col_failed col_seconds width rule
  width=$(results_width "$1")
  rule=$(printf '%*s' $((width + 103)) '' | tr ' ' '-')
  printf '%s\n' "${rule}"
  printf "%-${width}s | %-26s | %-16s | %-8s | %s\n" scenario 'failed during the change' \
    'new cred. in use' restarts verdict
  printf '%s\n' "${rule}"
  while IFS= read -r line; do
    s=$(result_field "${line}" scenario)
    failed=$(result_field "${line}" failed)
    total=$(result_field "${line}" total)
    seconds=$(result_field "${line}" seconds_to_new)
    restarts=$(result_field "${line}" restarts)
    verdict=$(result_field "${line}" verdict)
    note=$(result_field "${line}" note)
    if [[ "${failed}" == - ]]; then
      col_failed=-
    elif [[ "${failed}" == "${total}" && "${total}" != 0 && "${seconds}" =~ ^(never|-)$ ]]; then
      col_failed="all ${total} (never served)"
    else
      col_failed="${failed} of ${total}"
    fi
    col_seconds=${seconds}
    [[ "${seconds}" =~ ^[0-9.]+$ ]] && col_seconds="after ${seconds} s"
    printf "%-${width}s | %-26s | %-16s | %-8s | %s: %s\n" "${s}" "${col_failed}" \
      "${col_seconds}" "${restarts}" "${verdict}" "${note}"
  done <"$1"
  printf '%s\n' "${rule}"
}

# results_timelines RESULTS_FILE — the availability block under the table: a legend, then
# "  NAME TIMELINE" for each RESULT and CONTROL line, every line within TABLE_COLUMNS: when
# a timeline is too long for that, all of them are compressed alike, several seconds a glyph,
# and the legend says how many.
results_timelines() {
  local line width scale i
  local -a names=() timelines=()
  width=$(results_width "$1")
  while IFS= read -r line; do
    names+=("$(result_field "${line}" scenario)")
    timelines+=("$(result_field "${line}" timeline)")
  done <"$1"
  scale=$(timeline_scale $((TABLE_COLUMNS - width - 3)) "${timelines[@]}")
  if ((scale == 1)); then
    printf '\navailability per second (%s):\n' "${TIMELINE_LEGEND}"
  else
    printf '\navailability per %s seconds (each glyph the worst of its %s seconds):\n' \
      "${scale}" "${scale}"
    printf '  %s\n' "${TIMELINE_LEGEND}"
  fi
  for i in "${!names[@]}"; do
    printf "  %-${width}s %s\n" "${names[i]}" "$(timeline_fit "${timelines[i]}" "${scale}")"
  done
}
