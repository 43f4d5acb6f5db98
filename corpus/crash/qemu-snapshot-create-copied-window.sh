#!/usr/bin/env bash
# QEMU 7.2 defect (crash window): `qemu-img snapshot -c` raises the active clusters' refcounts and flushes them before the L1/L2 tables lose QCOW_OFLAG_COPIED; a crash between leaves refcount 2 with COPIED set, which qemu-img check counts as corruptions. Found with `qcow2 crashtest --impl engine --seed 1001` (the engine has the same window), then recorded with qemu-io and `qemu-img snapshot --image-opts driver=qcow2,file.driver=blklogwrites,...`.
# Crash state (qemu-io): crash-corruption: exit 2: Leaked cluster 4 refcount=2 reference=1 | Leaked cluster 5 refcount=2 reference=1 | Leaked cluster 6 refcount=1 reference=0 | ERROR OFLAG_COPIED L2 cluster: l1_index=0 l1_entry=8000000000000800 refcount=2 | ERROR OFLAG_COPIED data cluster: l2_entry=8000000000000a00 refcount=2 | { |     "image-end-offset": 3584, |     "total-clusters": 1, |     "corruptions": 2, |     "check-errors": 0, |  
# Expected: qemu-img check: no corruption (exit 0, or 3 for leaks)
#
# How the run was recorded:
#   qemu-img create -f qcow2 -o compat=0.10,cluster_size=512,refcount_bits=16 disk.qcow2 512; : > disk.log
#   the steps: qemu-io commands in one qemu-io (`open -o driver=qcow2,file.driver=blklogwrites,file.file.filename=disk.qcow2,file.log.filename=disk.log,file.log-append=on`,
#   `close` closes and opens again); snapshots: qemu-img snapshot -c|-a|-d NAME --image-opts <the same options>
#     0: write -P 0x01 0 1
#     1: snapshot -c s1
# The log has 27 entries; the crash comes after entry 13.
# Durable: entries 0..13 (up to the last FLUSH); landed since: 0 of the writes issued after it.
# Exits 1 when the failure reproduces, 0 when the state passes, 2 on set-up errors.
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
put() { base64 -d | gunzip | dd of="$img" bs=512 seek=$(( $1 / 512 )) conv=notrunc status=none || exit 2; }
# The image as of the last flush before the crash (3584 bytes)
base64 -d <<'B64' | gunzip > "$img" || exit 2
H4sIAAAAAAACAwt08/zNwMDAxIAKOCEUXJgRQrExIIkzMoyCYQJYRoNgpAJGKGRiYBrN0SMPNIBJ
jtGAGNHxzzUaECO2+B8Fo/l/tPwfqQAAgGpyIwAOAAA=
B64
# The oracle
qemu-img check -f qcow2 "$img"; st=$?
[ $st -eq 0 ] || [ $st -eq 3 ] || fail "qemu-img check exit $st (2: corruption)"
echo "no failure reproduced"
exit 0
