#!/usr/bin/env bash
# QEMU 7.2 defect (crash window), found by `qcow2 crashtest --impl engine --seconds 300 --seed 31337` in a qemu turn (24 steps after shrinking), shrunk by hand to 1 step: a compressed write that crosses into an L2 table not yet allocated. QEMU writes the clusters of one request as parallel tasks; each sets its compressed L2 entry in the cache before its data is written, and the task that allocates the next L2 table flushes the whole L2 cache (l2_allocate), so the table holding another task's new entry can reach the disk before that task's compressed bytes. A crash between leaves an L2 entry pointing at bytes that do not inflate: reads fail with EIO. The engine passes this step. Known finding qemu-compressed-l2-before-data.
# Crash state (qemu-io): crash-unreadable: engine: zlib: compressed cluster does not inflate (zlib -3: invalid stored block lengths) (at host offset 0x299e); qemu-img convert: exit 1: qemu-img: error while reading at byte 505856: Input/output error
# Expected: the image opens and reads
#
# How the run was recorded:
#   qemu-img create -f qcow2 -o compat=1.1,cluster_size=2048,refcount_bits=16,extended_l2=off,compression_type=zlib,lazy_refcounts=off disk.qcow2 1048576; : > disk.log
#   the steps: qemu-io commands in one qemu-io (`open -o driver=qcow2,file.driver=blklogwrites,file.file.filename=disk.qcow2,file.log.filename=disk.log,file.log-append=on`,
#   `close` closes and opens again); snapshots: qemu-img snapshot -c|-a|-d NAME --image-opts <the same options>
#     0: write -c -P 0xce 458752 131072
# The log has 81 entries; the crash comes after entry 36.
# Durable: entries 0..32 (up to the last FLUSH); landed since: 3 of the writes issued after it.
# Exits 1 when the failure reproduces, 0 when the state passes, 2 on set-up errors.
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
put() { base64 -d | gunzip | dd of="$img" bs=512 seek=$(( $1 / 512 )) conv=notrunc status=none || exit 2; }
# The image as of the last flush before the crash (11264 bytes)
base64 -d <<'B64' | gunzip > "$img" || exit 2
H4sIAAAAAAACA+3XoQrCUBQG4DOnIA5hwbA4sCza7QPjXkRsVjH7Uj6XRZwysK3p1e878B/OiYdb
btfubhGRx7uiz3KYJ89Wvcb5I7IYZxoRhwAAvkzpBADwT7Kh6tE/egAgaac+a4cAAACAH7Y97leX
c7dZtNemmq2XNp/bpPgSSNsd+ZQkMwAsAAA=
B64
# entry 33: write 8192+2048 (l2-table)
put 8192 <<'B64'
H4sIAAAAAAACA2NgGAWjYBSMglEwCkYecACTGjBaCEqrQGkzKO0BpaOgdB2UzoHSE6D0Iii9BUof
g9I3oPQrKP0HQmvyQWkFKG0EpV2gdBiUzoDSVVC6B0rPg9IboPQhKH0FSj/zgNA/IHwtLigtA6X1
AFWwCpIACAAA
B64
# entry 34: write 10240+512 (data)
put 10240 <<'B64'
H4sIAAAAAAACA7MuzxPpaQo04HI7qCHBqszLwGA9KjJoRGgPAE31+XQAAgAA
B64
# entry 35: write 12288+2048 (l2-table)
put 12288 <<'B64'
H4sIAAAAAAACA2NgGAWjYBSMglEwCkbBSAMAnrro8QAIAAA=
B64
# The oracle
qemu-img convert -f qcow2 -O raw "$img" "$dir/disk.raw" || fail "the image does not read"
echo "no failure reproduced"
exit 0
