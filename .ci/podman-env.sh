#!/usr/bin/env bash
# podman-env.sh — this machine's workaround for running containers with podman.
#
# Sourced by .ci/run (`. .ci/podman-env.sh`) before tests/image.sh and tests/multiarch.sh.
# Here crun cannot start containers on the hybrid cgroup setup, and podman's default
# rlimits (nofile 1048576) are above the hard limits a process may set, so every run would
# fail with "error setting rlimits ... operation not permitted". An ordinary Linux machine
# needs none of this: leave both variables unset there.
#
# Sets (only when not already set, so a caller can override or blank them):
#   PODMAN_GLOBAL_FLAGS  global podman flags, e.g. "--runtime runc"
#   PODMAN_RUN_FLAGS     extra `podman run` flags, e.g. "--ulimit nofile=1024:1024 ..."

if [ -z "${PODMAN_GLOBAL_FLAGS+set}" ] && command -v runc >/dev/null 2>&1; then
  export PODMAN_GLOBAL_FLAGS="--runtime runc"
fi
if [ -z "${PODMAN_RUN_FLAGS+set}" ]; then
  export PODMAN_RUN_FLAGS="--ulimit nofile=1024:1024 --ulimit nproc=1000:1000"
fi
