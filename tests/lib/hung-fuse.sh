#!/usr/bin/env bash
# hung-fuse.sh — runs a command with a FUSE filesystem on MOUNTPOINT whose daemon never
# answers: any access under MOUNTPOINT blocks in the kernel (killably), as on a hung
# network or FUSE mount. For the hung-read tests of tests/integration/reads.rs.
#
# Usage: tests/lib/hung-fuse.sh MOUNTPOINT COMMAND [ARG...]
#
# The mount is made in a mount namespace of the command's own (`unshare --mount`, and
# `--user --map-root-user` when not root, where the kernel allows FUSE in a user
# namespace): nothing outside it sees the mount, so the caller can never hang on it, and it
# is gone when the command ends. COMMAND is exec'd, so it keeps this script's PID (signals
# sent to it reach COMMAND), and it inherits the /dev/fuse descriptor on fd 3, which it
# never reads: when it exits, the descriptor closes and the kernel aborts what still waits.
# Prints `hung-fuse: mounted MOUNTPOINT` before the exec; a namespace or mount that cannot
# be made is one line on stderr and exit 1. Needs util-linux (unshare, mount) and
# /dev/fuse.
set -o errexit -o nounset -o pipefail

die() {
  printf 'hung-fuse.sh: error: %s\n' "$1" >&2
  exit "${2:-1}"
}

main() {
  if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,/^set -o/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
  fi
  if [[ "${1:-}" != --in-namespace ]]; then
    (($# >= 2)) || die "usage: hung-fuse.sh MOUNTPOINT COMMAND [ARG...]" 2
    [[ -d "$1" ]] || die "no directory $1 to mount on" 2
    local ns=(--mount)
    ((EUID == 0)) || ns=(--user --map-root-user --mount)
    exec unshare "${ns[@]}" -- "$0" --in-namespace "$@"
  fi
  shift
  local mountpoint=$1
  shift
  exec 3<>/dev/fuse || die "cannot open /dev/fuse"
  # -i: no mount.fuse helper (it would run the source as a daemon); the kernel only
  # needs the descriptor
  mount -i -t fuse -o fd=3,rootmode=40000,user_id=0,group_id=0 hello-path-hung "${mountpoint}" ||
    die "cannot mount FUSE on ${mountpoint}"
  printf 'hung-fuse: mounted %s\n' "${mountpoint}"
  exec "$@"
}

main "$@"
