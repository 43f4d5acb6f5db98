#!/usr/bin/env bash
# QEMU 7.2 defect (crash window), found by the fixed-seed slice of `qcow2 crashtest --impl qemu-io --seed 20261125` (npm test): zeroing over a compressed cluster frees it and discards its host cluster in the file (qemu-io opens with discard=unmap) before the L2 table still pointing at it is written, with no flush between. A crash after the discard leaves an L2 entry pointing at a hole: the cluster no longer inflates, reads fail with EIO (qemu-img check sees nothing). Recorded with qemu-io through blklogwrites.
# Crash state (qemu-io): crash-unreadable: engine: zlib: compressed cluster does not inflate (zlib -3: invalid stored block lengths) (at host offset 0x70000); qemu-img convert: exit 1: qemu-img: error while reading at byte 131072: Input/output error
# Expected: the image opens and reads
#
# How the run was recorded:
#   qemu-img create -f qcow2 -o compat=0.10,cluster_size=65536,refcount_bits=16 disk.qcow2 131584; : > disk.log
#   the steps: qemu-io commands in one qemu-io (`open -o driver=qcow2,file.driver=blklogwrites,file.file.filename=disk.qcow2,file.log.filename=disk.log,file.log-append=on`,
#   `close` closes and opens again); snapshots: qemu-img snapshot -c|-a|-d NAME --image-opts <the same options>
#     0: write -P 0x8b 65535 4
#     1: write -c -P 0x53 131072 512
#     2: write -P 0x91 72192 23620
#     3: write -z 122528 9056
# The log has 23 entries; the crash comes after entry 18.
# Durable: entries 0..16 (up to the last FLUSH); landed since: 1 of the writes issued after it.
# Exits 1 when the failure reproduces, 0 when the state passes, 2 on set-up errors.
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
put() { base64 -d | gunzip | dd of="$img" bs=512 seek=$(( $1 / 512 )) conv=notrunc status=none || exit 2; }
# The image as of the last flush before the crash (459264 bytes)
base64 -d <<'B64' | gunzip > "$img" || exit 2
H4sIAAAAAAACA+3cKw7CQBQF0NfyM4huhQWQoAhIHBsBS/0oFJZFEDwLQqIwpA0hKRZD23MmuS8z
YsRdwNss18+IyKOpqDP/PGd1Dhq3LAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAOiWXAUAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAC9l30dAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAeqmsYqgHAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AACAviurGL3nOGJRzYleAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAoIdSSkkLAAAAAAAAHXIEAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAP6KLeoAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAm9xvsyximp93l8Np
fi1W2/2PPz6U2iIvzai/0gACBwA=
B64
# entry 18: discard 458752+65536 (data)
dd if=/dev/zero of="$img" bs=512 seek=$(( 458752 / 512 )) count=$(( 65536 / 512 )) conv=notrunc status=none || exit 2
# The oracle
qemu-img convert -f qcow2 -O raw "$img" "$dir/disk.raw" || fail "the image does not read"
echo "no failure reproduced"
exit 0
