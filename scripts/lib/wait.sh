#!/usr/bin/env bash
# wait.sh — bounded waits that say what they wait for, and how long they have waited: a wait
# that can take a minute (the kubelet's next sync of a Secret) prints its progress at least
# every 5 s. Sourced by common.sh (it needs log, warn, die, now_ms, fmt_secs and WORK_DIR).
#
#   wait_for WHAT TIMEOUT_S POLL_S COMMAND...     until COMMAND succeeds, at most TIMEOUT_S
#   observe_for WHAT SECONDS POLL_S COMMAND...    that COMMAND never succeeds for SECONDS
#   fatal_later MESSAGE                           die at the next round (from a subshell)
# shellcheck shell=bash
# Variables set here are read by the scripts that source this file:
# shellcheck disable=SC2034

# fatal_later MESSAGE — for checks that run in a subshell (a pipeline, $(...)), where die
# would end only the subshell: the next wait_for / observe_for round dies with MESSAGE.
fatal_later() {
  [[ -n "${WORK_DIR}" ]] || die "$*"
  printf '%s\n' "$*" >"${WORK_DIR}/fatal"
}
_check_fatal() {
  if [[ -n "${WORK_DIR}" && -s "${WORK_DIR}/fatal" ]]; then
    die "$(cat "${WORK_DIR}/fatal")"
  fi
}

# wait_for WHAT TIMEOUT_S POLL_S COMMAND [ARG...]
#   Runs COMMAND every POLL_S seconds until it succeeds. Unless it holds at once, says what
#   it waits for, and how often it polls; every 5 s from the start, what it waits for and
#   the elapsed seconds (a ticker in the background, so that a slow round of COMMAND, the
#   first one included, cannot hold that line back); returns 1 with one warning after
#   TIMEOUT_S.
#   Sets WAITED_MS. Never waits unbounded as long as COMMAND is bounded: the kubectl calls
#   of a poll go through kube_poll / kube_t.
wait_for() {
  local what=$1 timeout=$2 poll=$3
  shift 3
  local start now
  start=$(now_ms)
  _ticker_start "${start}" "  still waiting for ${what}: " "s elapsed"
  if "$@"; then
    _ticker_stop
    WAITED_MS=0
    return 0
  fi
  _check_fatal
  log "waiting for ${what} (at most ${timeout}s, polling every ${poll}s)"
  while :; do
    sleep "${poll}"
    if "$@"; then
      WAITED_MS=$(($(now_ms) - start))
      _ticker_stop
      log "  done after $(fmt_secs "${WAITED_MS}")s: ${what}"
      return 0
    fi
    _check_fatal
    now=$(now_ms)
    if ((now - start >= timeout * 1000)); then
      WAITED_MS=$((now - start))
      _ticker_stop
      warn "gave up after ${timeout}s waiting for ${what}"
      return 1
    fi
  done
}

# observe_for WHAT SECONDS POLL_S COMMAND [ARG...]
#   The opposite: watches for SECONDS that COMMAND never succeeds (a negative control),
#   saying every 5 s how long it has watched. Returns 0 when it never did, 1 (at once) when
#   it did.
observe_for() {
  local what=$1 seconds=$2 poll=$3
  shift 3
  local start now
  start=$(now_ms)
  log "watching ${seconds}s that ${what} does NOT happen"
  _ticker_start "${start}" "  still not: ${what} (" "s of ${seconds}s)"
  while :; do
    if "$@"; then
      _ticker_stop
      warn "${what} happened after $(fmt_secs $(($(now_ms) - start)))s"
      return 1
    fi
    _check_fatal
    now=$(now_ms)
    if ((now - start >= seconds * 1000)); then
      _ticker_stop
      log "  for ${seconds}s it did not: ${what}"
      return 0
    fi
    sleep "${poll}"
  done
}

# _ticker_start START_MS BEFORE AFTER — a background job that logs BEFORE<seconds since
#   START_MS>AFTER 5, 10, 15 ... s after START_MS (0.1 s early, so that no gap between two
#   lines exceeds 5 s) until _ticker_stop, or until the script is gone. Its sleep writes
#   nowhere, so that a killed ticker leaves nothing holding the script's stdout open.
WAIT_TICKER=""
_ticker_start() {
  _ticker_stop
  local start=$1 before=$2 after=$3
  (
    trap - EXIT INT TERM PIPE HUP
    local next left elapsed
    next=$((($(now_ms) - start + 100) / 5000 + 1))
    # $$ is the script itself, also in this subshell.
    while kill -0 "$$" 2>/dev/null; do
      left=$((start + next * 5000 - 100 - $(now_ms)))
      if ((left > 0)); then
        sleep "$(fmt_secs "${left}")" </dev/null >/dev/null 2>&1 || exit 0
      fi
      kill -0 "$$" 2>/dev/null || exit 0
      elapsed=$(($(now_ms) - start))
      log "${before}$(((elapsed + 500) / 1000))${after}"
      # The next multiple of 5 s still ahead (never the same one twice).
      next=$((next + 1 > (elapsed + 100) / 5000 + 1 ? next + 1 : (elapsed + 100) / 5000 + 1))
    done
  ) </dev/null &
  WAIT_TICKER=$!
}
# _ticker_stop — ends the ticker with SIGKILL, not SIGTERM: a TERM that reaches it before it
#   has reset the traps it inherited is caught for the script's trap, which the ticker then
#   removes, and is lost: the ticker went on and the `wait` below never returned (a wait_for
#   whose command held at once, once in a few thousand). The ticker has nothing to clean up,
#   and its PID cannot be another process's until it is reaped here.
_ticker_stop() {
  [[ -n "${WAIT_TICKER}" ]] || return 0
  kill -KILL "${WAIT_TICKER}" 2>/dev/null || true
  wait "${WAIT_TICKER}" 2>/dev/null || true
  WAIT_TICKER=""
}
