#!/usr/bin/env bash
# kubelet-secret.sh — lay out and update a directory exactly as the kubelet does for a
# Secret volume (its "atomic writer"), so that the local scenarios and the tests see what a pod sees.
#
# Sourced by scripts/lib/local.sh (the local scenarios) and tests/image.sh; then:
#   secret_dir_init DIR KEY VALUE     DIR/..<timestamp>/KEY holds VALUE (no newline),
#                                     DIR/..data -> ..<timestamp>, DIR/KEY -> ..data/KEY
#   secret_dir_update DIR KEY VALUE   write a new ..<timestamp>/ directory, point a new
#                                     ..data_tmp symlink at it, rename it over ..data
#                                     (mv -T: one rename(2), the atomic step), then remove
#                                     the old timestamped directory
#
# The key file's own symlink never changes: only ..data does, which is why watching the key
# file's inode or mtime misses an update. Directories are 0755 and files 0644 (the default
# defaultMode 0644), so that a container running as another uid can read a bind mount of it.
# Only one key per directory is handled, which is all the tests need.

# Prints a fresh kubelet-style directory name: ..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN
_secret_dir_stamp() {
  local dir=$1 stamp
  while :; do
    stamp="..$(date -u +%Y_%m_%d_%H_%M_%S.%N)"
    [[ -e "${dir}/${stamp}" ]] || break
  done
  printf '%s\n' "${stamp}"
}

# Writes VALUE as DIR/STAMP/KEY.
_secret_dir_write() {
  local dir=$1 stamp=$2 key=$3 value=$4
  mkdir -m 0755 -- "${dir}/${stamp}" || return 1
  printf '%s' "${value}" >"${dir}/${stamp}/${key}" || return 1
  chmod 0644 -- "${dir}/${stamp}/${key}"
}

# secret_dir_init DIR KEY VALUE
secret_dir_init() {
  local dir=$1 key=$2 value=$3 stamp
  mkdir -p -- "${dir}" || return 1
  chmod 0755 -- "${dir}"
  stamp=$(_secret_dir_stamp "${dir}")
  _secret_dir_write "${dir}" "${stamp}" "${key}" "${value}" || return 1
  ln -s -- "${stamp}" "${dir}/..data" || return 1
  ln -s -- "..data/${key}" "${dir}/${key}"
}

# secret_dir_update DIR KEY VALUE
secret_dir_update() {
  local dir=$1 key=$2 value=$3 old stamp
  old=$(readlink -- "${dir}/..data") || {
    printf 'secret_dir_update: %s is not a kubelet-style directory (no ..data)\n' "${dir}" >&2
    return 1
  }
  stamp=$(_secret_dir_stamp "${dir}")
  _secret_dir_write "${dir}" "${stamp}" "${key}" "${value}" || return 1
  rm -f -- "${dir}/..data_tmp"
  ln -s -- "${stamp}" "${dir}/..data_tmp" || return 1
  if ! mv -T -- "${dir}/..data_tmp" "${dir}/..data" 2>/dev/null; then
    # No GNU mv -T: rename(2) through python3 (plain mv would move INTO the old directory).
    python3 -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' \
      "${dir}/..data_tmp" "${dir}/..data" || return 1
  fi
  [[ -L "${dir}/${key}" ]] || ln -s -- "..data/${key}" "${dir}/${key}"
  rm -rf -- "${dir:?}/${old}"
}
