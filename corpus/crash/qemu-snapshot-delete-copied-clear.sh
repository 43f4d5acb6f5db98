#!/usr/bin/env bash
# Found by `qcow2 crashtest --impl qemu-io --seed 20261125` (chunk seed 20261131) on 2026-11-26T00:34:00.967Z; shrunk to 10 steps.
# Crash state (qemu-io): crash-copied-clear: exit 2: Leaked cluster 7 refcount=1 reference=0 | ERROR OFLAG_COPIED data cluster: l2_entry=c000 refcount=1 | { |     "image-end-offset": 90112, |     "total-clusters": 17, |     "corruptions": 1, |     "check-errors": 0, |     "leaks": 1, |     "allocated-clusters": 2, |     "filename": "/dev/shm/qcow2-crash-juBUbq/crash-state.qcow2.33", |     "format": "qcow2", |     "fragmented-clusters": 1
# Expected: qemu-img check: no corruption (exit 0, or 3 for leaks)
#
# How the run was recorded:
#   qemu-img create -f qcow2 -o compat=0.10,cluster_size=8192,refcount_bits=16 disk.qcow2 131584; : > disk.log
#   the steps: qemu-io commands in one qemu-io (`open -o driver=qcow2,file.driver=blklogwrites,file.file.filename=disk.qcow2,file.log.filename=disk.log,file.log-append=on`,
#   `close` closes and opens again); snapshots: qemu-img snapshot -c|-a|-d NAME --image-opts <the same options>
#     0: write -s w1.bin 1 16383
#     1: snapshot -c s1
#     2: write -s w2.bin 4841 7000
#     3: read 0 16384
#     4: snapshot -a s1
#     5: write -s w3.bin 1999 914
#     6: read 0 16384
#     7: snapshot -d s1
#     8: write -s w4.bin 15163 7025
#     9: read 0 16384
# The log has 85 entries; the crash comes after entry 72.
# Durable: entries 0..72 (up to the last FLUSH); landed since: 0 of the writes issued after it.
# Exits 1 when the failure reproduces, 0 when the state passes, 2 on set-up errors.
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
put() { base64 -d | gunzip | dd of="$img" bs=512 seek=$(( $1 / 512 )) conv=notrunc status=none || exit 2; }
# The image as of the last flush before the crash (98304 bytes)
base64 -d <<'B64' | gunzip > "$img" || exit 2
H4sIAAAAAAACA+3dQUoCYQCG4X/cdwehC8xolLkaIoKW3SCRukJbj9JRvJebyJm0YPb28z1PoI3L
eaH4QP1fnp4PpZRZ+evq+Dg7vdwMT6/j5fzXawAAAAAAAADA/9C7BQAAAAAAAABQs2b8+fm9nK4A
AAAAAAAAgErsvh+auRsBAAAAAAAAANX7HJ/3bgUAAAAAAAAA1Oj6ox10fXvWrR+IMNV/oX90/xv9
o/vf6h/df6V/dP+N/tH9t/pH93/TP7l/Z/9n97f/s/vb/9n97f/s/vZ/dn/7P7u//Z/d3/6P7r+w
/7P72//Z/e3/7P72f3Z/+z+7v/2f3d/+z+5v/0f3X9r/2f3t/+z+9n92f/s/u7/9n93f/s/ub/9n
97f/YwxfArDzPQgAAAAAAAAAAAAAAAAAAABwQcdP/jf9eLV3QwAAAAAAAACgRhPnP7TO/4s+/6N1
/l92f+f/Zfd3/l/1NZfnmnfb9/UjEab63+t/QTX+/Xf+X/b/f+f/Rffv7P/s/vZ/dn/7P7u//Z/d
f6V/dP+N/tH97f/s/vZ/DG+AAAAAAAAAAID6fQFiMuM7AIABAA==
B64
# The oracle
qemu-img check -f qcow2 "$img"; st=$?
[ $st -eq 0 ] || [ $st -eq 3 ] || fail "qemu-img check exit $st (2: corruption)"
echo "no failure reproduced"
exit 0
