#!/usr/bin/env bash
# QEMU 7.2: qemu-img amend -o refcount_bits=32 spins for minutes on an empty image with 256 KiB
# clusters and refcount_bits=2 (found 2026-11-25 by the qemu-io slice's amend steps); qemu-img alone.
# Exits 1 when the failure reproduces (the amend still runs after 60 s and is killed), 0 when the
# amend finishes and the image checks clean, 2 on setup errors.
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
qemu-img create -q -f qcow2 -o compat=1.1,cluster_size=262144,refcount_bits=2 "$img" 34304 || exit 2
timeout 60 qemu-img amend -o refcount_bits=32 "$img"
status=$?
if [ $status -eq 124 ]; then
  echo "REPRODUCED: qemu-img amend -o refcount_bits=32 did not finish within 60 s" >&2
  exit 1
fi
[ $status -eq 0 ] || { echo "qemu-img amend exit $status" >&2; exit 2; }
qemu-img check -q "$img" || { echo "REPRODUCED: qemu-img check after amend" >&2; exit 1; }
echo "no failure reproduced"
exit 0
