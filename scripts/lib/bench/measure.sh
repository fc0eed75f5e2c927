#!/usr/bin/env bash
# measure.sh — the measurements of scripts/bench.sh on loopback (sourced): start → first
# 200, idle cost and idle keep-alive connections, wrk at 10 and 100 connections with
# logging on and off, reload latency, floods (pipelined, refused), descriptor exhaustion. Each records its figures with
# `sample KEY SIDE VALUE`; bench/rows.py says which row of the table shows a KEY. Needs
# run.sh.
# shellcheck shell=bash

measure_start() {
  local side port
  for side in $(sides); do
    port=$(free_port)
    log "start → first 200 OK, ${STARTS} starts (${side})"
    local -a cmd
    if [[ "${side}" == rs ]]; then cmd=("${OUR_CMD[@]}"); else cmd=("${PEER_CMD[@]}"); fi
    record_cmd "python3 -m bench start ${STARTS} PORT -- $(side_cmd "${side}") --mysecret ${SECRET} --listen-addr 127.0.0.1:${port}"
    py start "${STARTS}" "${port}" "${WORK}/start-${side}.log" -- "${cmd[@]}" \
      --mysecret "${SECRET}" --listen-addr "127.0.0.1:${port}" >"${WORK}/start-${side}.txt" ||
      { fail "start → first 200 (${side})"; continue; }
    local v
    while read -r v; do sample start_200 "${side}" "${v}"; done <"${WORK}/start-${side}.txt"
  done
}

# Idle RSS and CPU of a fresh server of each side (side by side), then the keep-alive flood
# on the same servers.
measure_idle_and_keepalive() {
  local side port
  local -a pids=() ports=() names=()
  for side in $(sides); do
    port=$(free_port)
    spawn "${side}" "idle-${side}" "${port}" || { fail "idle server (${side})"; continue; }
    pids+=("${LAST_PID}") ports+=("${port}") names+=("${side}")
  done
  ((${#pids[@]} > 0)) || return 0
  # Ours also while following a Secret volume (--reload --mysecret-file, the file watch and
  # its safety re-read at their defaults): idle must stay idle there too.
  local vol="${WORK}/secret-idle" reload_pid=""
  if py secret-init "${vol}" mysecret "${SECRET}"; then
    port=$(free_port)
    spawn_raw idle-rs-reload "${OUR_CMD[@]}" --reload --mysecret-file "${vol}/mysecret" \
      --listen-addr "127.0.0.1:${port}"
    if py wait-200 "${port}" 10 "${LAST_PID}"; then
      reload_pid=${LAST_PID}
    else
      fail "idle server (rs, --reload --mysecret-file)"
      stop "${LAST_PID}"
    fi
  else
    fail "secret dir (idle)"
  fi
  log "idle RSS and CPU over ${IDLE_SECONDS} s (${names[*]}${reload_pid:+, rs --reload})"
  record_cmd "python3 -m bench idle ${IDLE_SECONDS} PID...   # VmRSS; CPU and wake-ups from /proc/PID/task/*/{schedstat,status}"
  local i=0 pid rss cpu wakeups thr
  if py idle "${IDLE_SECONDS}" "${pids[@]}" ${reload_pid:+"${reload_pid}"} >"${WORK}/idle.txt"; then
    # PID RSS_KIB CPU_MS_PER_10S WAKEUPS_PER_S THREADS, one line per server
    while read -r pid rss cpu wakeups thr; do
      if [[ "${pid}" == "${reload_pid}" ]]; then
        sample idle_reload_rss rs "${rss}"
        sample idle_reload_wakeups rs "${wakeups}"
        continue
      fi
      sample idle_rss "${names[i]}" "${rss}"
      sample idle_cpu "${names[i]}" "${cpu}"
      sample idle_wakeups "${names[i]}" "${wakeups}"
      sample idle_threads "${names[i]}" "${thr}"
      i=$((i + 1))
    done <"${WORK}/idle.txt"
  else
    fail "idle measurement"
  fi
  if [[ -n "${reload_pid}" ]]; then stop "${reload_pid}"; fi
  for ((i = 0; i < ${#pids[@]}; i++)); do
    log "idle keep-alive connections, 100 then 1000, then closed (${names[i]})"
    record_cmd "python3 -m bench keepalive PID PORT   # 100 then 1000 conns, one GET each, held; closed; then 2 bursts of 100"
    py keepalive "${pids[i]}" "${ports[i]}" >"${WORK}/keepalive-${names[i]}.txt" ||
      fail "keep-alive measurement (${names[i]})"
    samples_from "${names[i]}" "${WORK}/keepalive-${names[i]}.txt"
    stop "${pids[i]}"
  done
}

# wrk_once SIDE MODE CONNS PORT PID
wrk_once() {
  local side=$1 mode=$2 conns=$3 port=$4 pid=$5 out rps p99 requests cpu0 main0 cpu1 main1
  local -a cmd=(wrk -t2 "-c${conns}" "-d${WRK_SECONDS}s" --latency "http://127.0.0.1:${port}/test")
  record_cmd "${cmd[*]}"
  read -r cpu0 main0 < <(py cpu "${pid}") || { fail "${side} ${mode} server is gone before wrk c${conns}"; return 0; }
  # Connections that never get an answer during the run are starved: wrk's figures then
  # describe the other connections only.
  rm -f "${WORK}/ready-starved" "${WORK}/ready-switches"
  py starved "${port}" "${WRK_SECONDS}" "${WORK}/ready-starved" >"${WORK}/starved.txt" &
  local watcher=$!
  PIDS+=("${watcher}")
  # Context switches per request (all the server's threads).
  py switches "${pid}" "${WRK_SECONDS}" "${WORK}/ready-switches" >"${WORK}/switches.txt" &
  local switcher=$!
  PIDS+=("${switcher}")
  # Both watchers loaded before wrk starts: two Python start-ups during the run's first
  # tenth of a second doubled our p99 at 100 connections (1.7 -> 3-4 ms).
  local waited=0
  while [[ ! -e "${WORK}/ready-starved" || ! -e "${WORK}/ready-switches" ]] && ((waited < 100)); do
    sleep 0.05
    waited=$((waited + 1))
  done
  out=$(timeout $((WRK_SECONDS + 20)) "${cmd[@]}" 2>&1) || out="wrk failed: ${out}"
  if wait "${watcher}"; then
    sample "starved_c${conns}_${mode}" "${side}" "$(<"${WORK}/starved.txt")"
  fi
  forget "${watcher}"
  local per_s=""
  if wait "${switcher}"; then per_s=$(<"${WORK}/switches.txt"); fi
  forget "${switcher}"
  [[ "${out}" != "wrk failed: "* ]] || { fail "wrk ${side} ${mode} c${conns}: ${out}"; return 0; }
  read -r cpu1 main1 < <(py cpu "${pid}") || { fail "${side} ${mode} server is gone after wrk c${conns}"; return 0; }
  printf '%s\n' "${out}" >>"${WORK}/wrk-${side}-${mode}-c${conns}.txt"
  read -r rps p99 requests < <(py wrk-parse <<<"${out}") || { fail "cannot parse wrk output (${side} ${mode} c${conns})"; return 0; }
  sample "rps_c${conns}_${mode}" "${side}" "${rps}"
  sample "p99_c${conns}_${mode}" "${side}" "${p99}"
  if ((requests > 0)); then
    # CPU per request in µs: the whole process, and (ours) the main thread that answers all.
    sample "cpu_c${conns}_${mode}" "${side}" "$(((cpu1 - cpu0) * 1000000 / requests / 1000)).$(printf '%01d' $((((cpu1 - cpu0) * 10000 / requests) % 10)))"
    if [[ -n "${per_s}" ]]; then
      sample "switches_c${conns}_${mode}" "${side}" "$(awk -v s="${per_s}" -v r="${rps}" 'BEGIN { printf "%.2f", s / r }')"
    fi
    if [[ "${side}" == rs ]]; then
      sample "main_c${conns}_${mode}" "${side}" "$(((main1 - main0) * 1000 / requests)).$(printf '%01d' $((((main1 - main0) * 10000 / requests) % 10)))"
      sample "mainbusy_c${conns}_${mode}" "${side}" "$(((main1 - main0) * 100 / (WRK_SECONDS * 1000)))"
    fi
  fi
  if grep -qE 'Non-2xx|Socket errors' <<<"${out}"; then
    printf '%s %s c%s: %s\n' "${side}" "${mode}" "${conns}" \
      "$(grep -E 'Non-2xx|Socket errors' <<<"${out}" | tr -s ' ' | tr '\n' ' ')" >>"${WORK}/wrk-errors.txt"
  fi
}

measure_wrk() {
  local side mode port run conns
  local -A port_of=()
  for side in $(sides); do
    for mode in log nolog; do
      local -a extra=()
      if [[ "${mode}" == nolog ]]; then
        if [[ "${side}" == rs ]]; then
          extra=(--log-requests=false)
        elif ((${#PEER_NOLOG[@]} > 0)); then
          extra=("${PEER_NOLOG[@]}")
        else
          continue
        fi
      fi
      port=$(free_port)
      spawn "${side}" "wrk-${side}-${mode}" "${port}" "${extra[@]}" || { fail "wrk server ${side} ${mode}"; continue; }
      port_of["${side}-${mode}"]=${port}
      port_of["${side}-${mode}-pid"]=${LAST_PID}
      # Warm-up: threads, connections, page cache of the log file (not worth it in --quick).
      if [[ "${QUICK}" == false ]]; then
        timeout 20 wrk -t2 -c100 -d1s "http://127.0.0.1:${port}/test" >/dev/null 2>&1 || true
      fi
    done
  done
  log "wrk: ${WRK_RUNS} run(s) of ${WRK_SECONDS} s at 10 and 100 connections, logging on/off, sides interleaved"
  for ((run = 1; run <= WRK_RUNS; run++)); do
    for conns in 10 100; do
      for mode in log nolog; do
        for side in $(sides); do
          [[ -n "${port_of[${side}-${mode}]:-}" ]] || continue
          wrk_once "${side}" "${mode}" "${conns}" "${port_of[${side}-${mode}]}" \
            "${port_of[${side}-${mode}-pid]}"
        done
      done
    done
  done
  local key
  for key in "${!port_of[@]}"; do
    [[ "${key}" == *-pid ]] && stop "${port_of[${key}]}"
  done
  return 0
}

# Reload latency, one server per way of noticing a swap:
#   watch     the file watch, safety re-read at its default (1 min)
#   watch-1h  the same with --watch-interval 1h: only the watch can explain a fast reload
#   sighup    SIGHUP, with the watch off (--watch=false, safety re-read an hour away), so
#             that what is timed is the signal, not the watch beating it to the swap
#   post      POST /-/reload, the watch off the same way
measure_reload() {
  local dir port mode
  for mode in watch watch-1h sighup post; do
    dir="${WORK}/secret-${mode}"
    py secret-init "${dir}" mysecret "${SECRET}" || { fail "secret dir"; return 0; }
    port=$(free_port)
    local -a extra=(--reload --mysecret-file "${dir}/mysecret" --expected-secret "4321,5678")
    case "${mode}" in
      watch) ;;
      watch-1h) extra+=(--watch-interval 1h) ;;
      *) extra+=(--watch=false --watch-interval 1h) ;;
    esac
    local -a cmd=("${OUR_CMD[@]}" "${extra[@]}" --listen-addr "127.0.0.1:${port}")
    spawn_raw "reload-${mode}" "${cmd[@]}"
    local pid=${LAST_PID}
    if ! py wait-200 "${port}" 10 "${pid}"; then
      fail "reload server (${mode})"
      stop "${pid}"
      continue
    fi
    log "reload latency (${mode}), ${RELOAD_RUNS} runs"
    record_cmd "python3 -m bench reload ${mode%-1h} ${RELOAD_RUNS} PID PORT DIR LOG   # kubelet-style swap of ..data; wait for the log line (watch, sighup), then GET /mysecret"
    py reload "${mode%-1h}" "${RELOAD_RUNS}" "${pid}" "${port}" "${dir}" "${WORK}/reload-${mode}.log" >"${WORK}/reload-${mode}.txt" ||
      fail "reload (${mode})"
    local v
    while read -r v; do
      sample "reload_${mode//-/_}" rs "${v}"
    done <"${WORK}/reload-${mode}.txt"
    stop "${pid}"
  done
}

# Floods that must not cost what they send (issue 17), on a fresh server (its VmHWM is its
# peak since start): 8 connections pipeline 1 MiB of GETs each and never read; then one
# request per connection, refused (400) or ordinary, the server's CPU per request. Ours
# only: the targets are absolute (the pods' memory limit) or against our own GETs, and a
# peer without a send timeout would hold the flood for as long as the helper waits.
measure_floods() {
  local port pid
  port=$(free_port)
  spawn rs floods-rs "${port}" || { fail "flood server"; return 0; }
  pid=${LAST_PID}
  log "pipelined flood: 8 conns × 1 MiB never read; then ${REFUSALS} refused and ${REFUSALS} ordinary requests"
  record_cmd "python3 -m bench pipeflood PID PORT 8 1024   # 8 conns send 1 MiB of pipelined GETs, never read; a GET every 50 ms meanwhile; VmHWM"
  py pipeflood "${pid}" "${port}" 8 1024 >"${WORK}/pipeflood-rs.txt" || fail "pipelined flood"
  samples_from rs "${WORK}/pipeflood-rs.txt"
  record_cmd "python3 -m bench refusals PID PORT ${REFUSALS}   # one request per connection, 400 or 200, in alternating blocks; CPU from /proc/PID/task/*/schedstat"
  py refusals "${pid}" "${port}" "${REFUSALS}" >"${WORK}/refusals-rs.txt" || fail "refusal flood"
  samples_from rs "${WORK}/refusals-rs.txt"
  stop "${pid}"
}

# fd exhaustion: RLIMIT_NOFILE 64, 100 connections held, then closed: does it serve again?
measure_fd() {
  local side port run pid log
  for side in $(sides); do
    log "fd exhaustion: nofile ${FD_LIMIT}, ${FD_CONNS} connections, ${FD_RUNS} trial(s) (${side})"
    for ((run = 1; run <= FD_RUNS; run++)); do
      port=$(free_port)
      log="fd-${side}-${run}"
      local -a cmd
      if [[ "${side}" == rs ]]; then cmd=("${OUR_CMD[@]}"); else cmd=("${PEER_CMD[@]}"); fi
      cmd=(prlimit "--nofile=${FD_LIMIT}:${FD_LIMIT}" -- "${cmd[@]}" --mysecret "${SECRET}" --listen-addr "127.0.0.1:${port}")
      spawn_raw "${log}" "${cmd[@]}"
      pid=${LAST_PID}
      if ! py wait-200 "${port}" 10 "${pid}"; then
        fail "fd exhaustion server (${side})"
        stop "${pid}"
        continue
      fi
      record_cmd "python3 -m bench fdflood PID PORT ${FD_CONNS}   # hold ${FD_CONNS} conns 2 s, close, then a new GET every 20 ms"
      py fdflood "${pid}" "${port}" "${FD_CONNS}" >"${WORK}/${log}.txt" || fail "fd exhaustion (${side})"
      samples_from "${side}" "${WORK}/${log}.txt"
      if running "${pid}"; then
        sample fd_exit "${side}" alive
      else
        reap "${pid}"
        sample fd_exit "${side}" "${REAPED}"
        sample fd_cause "${side}" "$(py cause "${WORK}/${log}.log")"
      fi
      # Our server logs each restart of its accept thread.
      if grep -q 'stopped accepting' "${WORK}/${log}.log"; then
        sample fd_listener_restarts "${side}" "$(grep -c 'accepts connections again' "${WORK}/${log}.log" || true)"
      fi
      stop "${pid}"
    done
  done
}

