#!/usr/bin/env bash
# QEMU 7.2 defect (crash window), found by `qcow2 crashtest --impl qemu-io --seconds 300 --seed 2024` (57 steps after shrinking), shrunk by hand to 6: the window of qemu-discard-compressed-before-l2-update still open when the next step writes the cached metadata back. The last discard frees the host cluster packing the compressed clusters of guest 12k-40k and punches it in the file while the L2 table that still points there is only in QEMU's cache; the check step closes the image, which writes that L2 table: a crash before or during that write (a torn L2 table whose first sector did not land) leaves entries pointing at the hole: reads fail with EIO. Known finding qemu-l2-writeback-after-discard-compressed.
# Crash state (qemu-io): crash-unreadable: engine: zlib: compressed cluster does not inflate (zlib -3: invalid stored block lengths) (at host offset 0x5050); qemu-img convert: exit 1: qemu-img: error while reading at byte 36864: Input/output error
# Expected: the image opens and reads
#
# How the run was recorded:
#   qemu-img create -f qcow2 -o compat=0.10,cluster_size=4096,refcount_bits=16 disk.qcow2 129024; : > disk.log
#   the steps: qemu-io commands in one qemu-io (`open -o driver=qcow2,file.driver=blklogwrites,file.file.filename=disk.qcow2,file.log.filename=disk.log,file.log-append=on`,
#   `close` closes and opens again); snapshots: qemu-img snapshot -c|-a|-d NAME --image-opts <the same options>
#     0: write -c -P 0x7f 12288 28672
#     1: flush
#     2: discard 12288 20480
#     3: write -z -u 24576 12288
#     4: discard 36864 4096
#     5: check
# The log has 26 entries; the crash comes after entry 22.
# Durable: entries 0..20 (up to the last FLUSH); landed since: 2 of the writes issued after it.
# Exits 1 when the failure reproduces, 0 when the state passes, 2 on set-up errors.
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
put() { base64 -d | gunzip | dd of="$img" bs=512 seek=$(( $1 / 512 )) conv=notrunc status=none || exit 2; }
# The image as of the last flush before the crash (20992 bytes)
base64 -d <<'B64' | gunzip > "$img" || exit 2
H4sIAAAAAAACA+3YuwkCURAF0PtMTBQNLMASLMFIMFsb2RosxQ6sQasxEQwFE2FXYY3M/CznDMww
E96Xvc1qfUsyyKtR08v1uZd2LB7rtHMDAAAA/sNcBAAAANBnpVMAAABAL22bvhQEAAAA8Fb7g1BV
kgAAAIDfcz6UcZLj7rSvJ8NZkkv9rZvX+Lw7cPKJ7QBSAAA=
B64
# entry 21: discard 20480+4096 (data)
dd if=/dev/zero of="$img" bs=512 seek=$(( 20480 / 512 )) count=$(( 4096 / 512 )) conv=notrunc status=none || exit 2
# entry 22: write 16896+3584 (l2-table) — torn: sectors 1..7 of 8 landed
put 16896 <<'B64'
H4sIAAAAAAACA+3BAQEAAACCIP+vbkhAAQAA8GB8iII7AA4AAA==
B64
# The oracle
qemu-img convert -f qcow2 -O raw "$img" "$dir/disk.raw" || fail "the image does not read"
echo "no failure reproduced"
exit 0
