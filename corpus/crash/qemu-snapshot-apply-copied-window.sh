#!/usr/bin/env bash
# QEMU 7.2 defect (crash window): `qemu-img snapshot -a` changes refcounts and QCOW_OFLAG_COPIED in separate flush segments; a crash between leaves OFLAG_COPIED errors in qemu-img check (corruptions). Recorded with qemu-io and `qemu-img snapshot --image-opts driver=qcow2,file.driver=blklogwrites,...`; the engine has the same window (found by `qcow2 crashtest --impl engine --seed 1001`).
# Crash state (qemu-io): crash-corruption: exit 2: Leaked cluster 8 refcount=1 reference=0 | Leaked cluster 9 refcount=1 reference=0 | ERROR OFLAG_COPIED L2 cluster: l1_index=0 l1_entry=8000000000040000 refcount=2 | { |     "image-end-offset": 655360, |     "total-clusters": 16, |     "corruptions": 1, |     "check-errors": 0, |     "leaks": 2, |     "allocated-clusters": 1, |     "filename": "/tmp/crash-state.qcow2.20", |     "format": "q
# Expected: qemu-img check: no corruption (exit 0, or 3 for leaks)
#
# How the run was recorded:
#   qemu-img create -f qcow2 -o compat=0.10,cluster_size=65536,refcount_bits=16 disk.qcow2 1048576; : > disk.log
#   the steps: qemu-io commands in one qemu-io (`open -o driver=qcow2,file.driver=blklogwrites,file.file.filename=disk.qcow2,file.log.filename=disk.log,file.log-append=on`,
#   `close` closes and opens again); snapshots: qemu-img snapshot -c|-a|-d NAME --image-opts <the same options>
#     0: write -P 0x01 0 1024
#     1: snapshot -c s1
#     2: write -P 0x09 0 1024
#     3: snapshot -a s1
# The log has 53 entries; the crash comes after entry 46.
# Durable: entries 0..46 (up to the last FLUSH); landed since: 0 of the writes issued after it.
# Exits 1 when the failure reproduces, 0 when the state passes, 2 on set-up errors.
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
put() { base64 -d | gunzip | dd of="$img" bs=512 seek=$(( $1 / 512 )) conv=notrunc status=none || exit 2; }
# The image as of the last flush before the crash (655360 bytes)
base64 -d <<'B64' | gunzip > "$img" || exit 2
H4sIAAAAAAACA+3UsQ3CMBAF0LMJROlS0jJCKjZAomQOShbIDizCSOxBgxKhkMAG8XuWvu4kV7+4
y+n8iogcS+0sB2nMzWJL01QHAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAa5BVAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAULz0eTnyNAMAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAFCcfohKDwAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AETEVgUAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAClS0CxXEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAP5UKgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACAidmOmSJGv9eEex+fj58d+sbXfsbt1+gMA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAFiBfohGDwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAKVrgGK5gAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAzL0BjdfxGAAACgA=
B64
# The oracle
qemu-img check -f qcow2 "$img"; st=$?
[ $st -eq 0 ] || [ $st -eq 3 ] || fail "qemu-img check exit $st (2: corruption)"
echo "no failure reproduced"
exit 0
