#!/usr/bin/env bash
# QEMU 7.2: qemu-img check -r frees a persistent bitmap's clusters once the image has an internal
# snapshot, although qemu-img check reports the image clean. Exits 1 while this reproduces.
# (properties/known-bugs/qemu-7.2-check-repair-frees-bitmap-clusters.json)
set -u
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
img="$dir/img.qcow2"
qemu-img create -q -f qcow2 -o cluster_size=512 "$img" 512M || exit 2
qemu-img bitmap --add -g 512 "$img" b0 || exit 2
qemu-img snapshot -c s1 "$img" || exit 2
qemu-img check "$img" >/dev/null || { echo "plain check is not clean: not this bug"; exit 2; }
out=$(qemu-img check -r leaks "$img" 2>&1)
if grep -q 'leaked clusters' <<<"$out"; then
  echo "REPRODUCED: qemu-img check -r leaks 'repaired' clusters that qemu-img check found in use:"
  grep 'leaked clusters' <<<"$out"
  exit 1
fi
echo "not reproduced"; exit 0
