#!/usr/bin/env bash
# fake-api.sh — the fake API server of tests/nudger.sh (tests/lib/fake_apiserver.py), over
# TLS, for the tests that run the nudger's image or arm64 binary against it
# (tests/image.sh, tests/multiarch.sh). Sourced, never run.
#
#   fake_api_start DIR TOKEN USER
#       serves the recorded pods, Secrets and ReplicaSets of tests/fixtures/nudge from
#       DIR/fixtures, with a CA and a certificate made in DIR/certs (openssl), accepting
#       the bearer TOKEN as USER; its log is DIR/log. Sets FAKE_PID (for the caller's
#       clean-up) and FAKE_PORT. When it cannot start it returns 1, FAKE_WHY says what
#       failed and DIR/server.err holds what openssl or the server printed.
# shellcheck shell=bash
# FAKE_PID, FAKE_PORT and FAKE_WHY are read by the tests that source this file:
# shellcheck disable=SC2034

fake_api_start() {
  local dir=$1 token=$2 user=$3 root i
  root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
  FAKE_PORT="" FAKE_WHY=""
  mkdir -p "${dir}/fixtures"
  cp "${root}"/tests/fixtures/nudge/{pods,secrets,replicasets}.json "${dir}/fixtures/"
  if ! python3 "${root}/tests/lib/fake_apiserver.py" certs "${dir}/certs" >"${dir}/server.err" 2>&1; then
    FAKE_WHY="certificates for the fake API server (openssl)"
    return 1
  fi
  printf '%s %s\n' "${token}" "${user}" >"${dir}/tokens"
  python3 "${root}/tests/lib/fake_apiserver.py" serve --fixtures "${dir}/fixtures" \
    --port-file "${dir}/port" --control-port-file "${dir}/cport" --log "${dir}/log" \
    --tls-dir "${dir}/certs" --tokens "${dir}/tokens" >"${dir}/server.err" 2>&1 &
  FAKE_PID=$!
  for ((i = 0; i < 100; i++)); do
    [[ ! -s "${dir}/port" ]] || break
    sleep 0.1
  done
  FAKE_PORT=$(cat "${dir}/port" 2>/dev/null) || FAKE_PORT=""
  if [[ -z "${FAKE_PORT}" ]]; then
    FAKE_WHY="the fake API server starts within 10 s"
    return 1
  fi
}
