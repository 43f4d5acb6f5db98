#!/usr/bin/env bash
# QEMU 7.2 defect (crash window), found by `qcow2 crashtest --impl qemu-io --seconds 300 --seed 2024` (57 steps after shrinking, shrunk by hand to 4): the same window as qemu-reused-cluster-before-l2-update, met where the freed host cluster held compressed clusters. A discard frees the host cluster that packs the compressed clusters of guest 8k-40k, and QEMU makes it allocatable at once, while the L2 table that drops their mapping is still only in its cache; the next allocating write (guest 40k) reuses that host cluster and its data reaches the disk with no flush before the L2 update. A crash between leaves guest 8k-40k mapped as compressed clusters into bytes that no longer inflate: qemu-img convert fails with EIO. Known finding qemu-reused-compressed-cluster-before-l2-update.
# Crash state (qemu-io): crash-unreadable: engine: zlib: compressed cluster does not inflate (zlib -3: invalid code lengths set) (at host offset 0x5000); qemu-img convert: exit 1: qemu-img: error while reading at byte 36864: Input/output error qemu-img: error while reading at byte 32768: Input/output error qemu-img: error while reading at byte 28672: Input/output error qemu-img: error while reading at byte 24576: Input/output error qemu-im
# Expected: the image opens and reads
#
# How the run was recorded:
#   qemu-img create -f qcow2 -o compat=0.10,cluster_size=4096,refcount_bits=16 disk.qcow2 65536; : > disk.log
#   the steps: qemu-io commands in one qemu-io (`open -o driver=qcow2,file.driver=blklogwrites,file.file.filename=disk.qcow2,file.log.filename=disk.log,file.log-append=on`,
#   `close` closes and opens again); snapshots: qemu-img snapshot -c|-a|-d NAME --image-opts <the same options>
#     0: write -c -s w1.bin 8192 32768
#     1: flush
#     2: discard 8192 32768
#     3: write -P 0x54 40960 309
# The log has 27 entries; the crash comes after entry 20.
# Durable: entries 0..17 (up to the last FLUSH); landed since: 2 of the writes issued after it.
# Exits 1 when the failure reproduces, 0 when the state passes, 2 on set-up errors.
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
put() { base64 -d | gunzip | dd of="$img" bs=512 seek=$(( $1 / 512 )) conv=notrunc status=none || exit 2; }
# The image as of the last flush before the crash (21504 bytes)
base64 -d <<'B64' | gunzip > "$img" || exit 2
H4sIAAAAAAACA+3YTSgEYRzH8VmSXUlbRpLLrvfi4MBBqbUsRbReDlIbORIOLg7UUEpO9kBJag/e
bkrKS3ugOKyX0iYXJGocveQgm/XSMzu02HD08v1MzX+epn795pnmMnUVlfeSJEVJb8VrZ8PrWr/K
15fmt3cBAAAAAMAvYGELAAAAAAD4ywyvh5HNAAAAAADgb+rXziVsBAAAAAAA/0joT0Dty6zW57g+
1dCsy9dnnyM0faF1vcwOAgAAAADw81z4F0ySxVzmb3WdFjs2q44dmymuFvtOh7vPOK20HuUuKbtX
7Y1yzOnVzZwpkB3YHwwuBttKH8sfC6xPVmXC/TRqq/EpW57Z6Au/1yRZZC0rYA/PchmnbV1HO8tK
3snBfE73us3nyVI9qjPxZk+kJovUIZHaIFIzlYmE8F6jZZ/10mJ6Pu9lj5PM8uDZxsp6ekbu6rAa
P+9cmEzdDRYW3u919gZuR2a8h0nlCXexImZKxDSJmDQR4xYx254sdU117hvCe8lFX/bSHs/7nV7W
iL3O3/eq/LJX10DDh/e49JB0aGu+bG+UU65HvvEew3qZIvYai9gr72MvvrCf7RlCBDlpAFQAAA==
B64
# entry 18: discard 20480+4096 (data)
dd if=/dev/zero of="$img" bs=512 seek=$(( 20480 / 512 )) count=$(( 4096 / 512 )) conv=notrunc status=none || exit 2
# entry 19: write 20480+4096 (data)
put 20480 <<'B64'
H4sIAAAAAAACA+3BMQ0AAAwDoImsfy3T0LMJkFA7AAAA2PJXeoAfABAAAA==
B64
# The oracle
qemu-img convert -f qcow2 -O raw "$img" "$dir/disk.raw" || fail "the image does not read"
echo "no failure reproduced"
exit 0
