#!/usr/bin/env bash
# containers.sh — the container rows of scripts/bench.sh (sourced): SIGTERM → exit as PID 1
# (`podman stop`) and thread exhaustion under a pids limit, for our image and the peer's.
# Every engine call goes through `engine` (scripts/lib/engine.sh) with the flags found out
# by engine_detect_run (ENGINE_GLOBAL, ENGINE_RUN). Needs run.sh.
# shellcheck shell=bash

# containers_setup — finds out what `podman run` needs on this machine, with our image
# (engine_detect_run), and says so in one line when it falls back on something.
containers_setup() {
  if engine_detect_run "${IMAGE_REF}" --version; then
    [[ -z "${ENGINE_NOTE}" ]] || log "${ENGINE_NOTE}"
  else
    log "${ENGINE_NOTE}: the container rows will fail"
  fi
}

podman_run() {
  local name=$1
  shift
  CONTAINERS+=("${name}")
  record_cmd "podman${ENGINE_GLOBAL[*]:+ ${ENGINE_GLOBAL[*]}} run${ENGINE_RUN[*]:+ ${ENGINE_RUN[*]}} -d --name NAME --network host $*"
  engine run "${ENGINE_RUN[@]}" -d --name "${name}" --network host "$@" >/dev/null
}

podman_rm() {
  engine rm -f -t 0 "$1" >/dev/null 2>&1 || true
}

container_state() {
  engine inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$1"
}

image_of() { if [[ "$1" == rs ]]; then echo "${IMAGE_REF}"; else echo "${PEER_IMAGE}"; fi; }

container_sides() {
  echo rs
  if [[ "${PEER_HAS_IMAGE}" == true ]]; then echo peer; fi
}

# SIGTERM → exit as PID 1: `podman stop -t 10` timed, exit code from podman inspect.
measure_pid1() {
  local side run name port t0 t1 code
  for side in $(container_sides); do
    log "stop as PID 1 in a container, ${STOP_RUNS} run(s) (${side})"
    for ((run = 1; run <= STOP_RUNS; run++)); do
      name="hpbench-stop-${side}-$$-${run}"
      port=$(free_port)
      if ! podman_run "${name}" "$(image_of "${side}")" --mysecret "${SECRET}" --listen-addr "127.0.0.1:${port}" ||
        ! py wait-200 "${port}" 15; then
        fail "container start (${side})"
        podman_rm "${name}"
        continue
      fi
      record_cmd "podman${ENGINE_GLOBAL[*]:+ ${ENGINE_GLOBAL[*]}} stop -t 10 NAME; podman inspect --format '{{.State.ExitCode}}' NAME"
      t0=$(now_us)
      engine stop -t 10 "${name}" >/dev/null 2>&1 || fail "podman stop (${side})"
      t1=$(now_us)
      code=$(engine inspect --format '{{.State.ExitCode}}' "${name}" 2>/dev/null || echo '?')
      # milliseconds, from microseconds
      sample pid1_stop "${side}" "$(((t1 - t0) / 1000)).$(printf '%03d' $(((t1 - t0) % 1000)))"
      sample pid1_exit "${side}" "${code}"
      podman_rm "${name}"
    done
  done
}

# Thread exhaustion: a pids limit below what the connections need.
measure_pids() {
  local side name port state
  for side in $(container_sides); do
    name="hpbench-pids-${side}-$$"
    port=$(free_port)
    log "thread exhaustion: --pids-limit ${PIDS_LIMIT}, ${PIDS_CONNS} connections (${side})"
    if ! podman_run "${name}" --pids-limit "${PIDS_LIMIT}" "$(image_of "${side}")" \
      --mysecret "${SECRET}" --listen-addr "127.0.0.1:${port}" || ! py wait-200 "${port}" 15; then
      fail "container start (${side}, pids limit)"
      podman_rm "${name}"
      continue
    fi
    record_cmd "python3 -m bench flood PORT ${PIDS_CONNS}   # hold ${PIDS_CONNS} conns 2 s, count 200s, close"
    py flood "${port}" "${PIDS_CONNS}" >"${WORK}/pids-${side}.txt" || fail "pids flood (${side})"
    samples_from "${side}" "${WORK}/pids-${side}.txt"
    py sleep 1
    state=$(container_state "${name}" 2>/dev/null || echo "unknown ?")
    local status code
    read -r status code <<<"${state}"
    sample pids_status "${side}" "${status}"
    sample pids_exit "${side}" "${code}"
    if [[ "${status}" == running ]]; then
      if py wait-200 "${port}" 5; then sample pids_serves "${side}" yes; else sample pids_serves "${side}" no; fi
    else
      sample pids_serves "${side}" no
    fi
    engine logs "${name}" >"${WORK}/pids-${side}.log" 2>&1 || true
    sample pids_cause "${side}" "$(py cause "${WORK}/pids-${side}.log")"
    podman_rm "${name}"
  done
}

