#!/usr/bin/env bash
# QEMU 7.2 defect (crash window), found by `qcow2 crashtest --impl qemu-io --seconds 120 --seed 7` (23 steps, shrunk by hand to 4): a discard frees the host cluster of guest 0 and QEMU makes it allocatable at once, while the L2 table that drops guest 0's mapping is still only in its cache; the next allocating write (guest 64k) reuses that host cluster and its data reaches the disk with no flush before the L2 update. A crash between leaves guest 0 mapped to the host cluster now holding guest 64k's data: guest 0 reads 0x44, never written there. The engine passes these steps (freed clusters are reused only after the L2 update is flushed). Known finding qemu-reused-cluster-before-l2-update.
# Crash state (qemu-io): crash-never-written: 0x44 over 4096 bytes from 0 (never written there)
# Expected: byte 0: 0x23 or 0x00 (flushed at step 1, steps up to 3 started)
#
# How the run was recorded:
#   qemu-img create -f qcow2 -o compat=1.1,cluster_size=65536,refcount_bits=16,extended_l2=off,compression_type=zlib,lazy_refcounts=off disk.qcow2 1048576; : > disk.log
#   the steps: qemu-io commands in one qemu-io (`open -o driver=qcow2,file.driver=blklogwrites,file.file.filename=disk.qcow2,file.log.filename=disk.log,file.log-append=on`,
#   `close` closes and opens again); snapshots: qemu-img snapshot -c|-a|-d NAME --image-opts <the same options>
#     0: write -P 0x23 0 65536
#     1: flush
#     2: discard 0 65536
#     3: write -P 0x44 65536 65536
# The log has 19 entries; the crash comes after entry 12.
# Durable: entries 0..10 (up to the last FLUSH); landed since: 1 of the writes issued after it.
# Exits 1 when the failure reproduces, 0 when the state passes, 2 on set-up errors.
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
put() { base64 -d | gunzip | dd of="$img" bs=512 seek=$(( $1 / 512 )) conv=notrunc status=none || exit 2; }
# The image as of the last flush before the crash (393216 bytes)
base64 -d <<'B64' | gunzip > "$img" || exit 2
H4sIAAAAAAACA+3QwUrDQBAA0E1T735CwD/wIwTBiyfPabPFQE1CskXrqZ8teLERhPbSxnPeWxgY
2Blm5vnh8TuEkIdztydxlP3G/CzLwjTLEEL3l7zmXy/H0kMIVd2nfbGq07Qu2brt+12XplYs4keK
fVNui6pMZbGpt/Hi/3zdvnV9HIa6bYq07+K1rcb+TRWr4um+iE3q6zhcGj9sy8990cfNut01abg6
fljV6a3sholHXmR9+V6c7RwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAD+beEEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAs5edPAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGbrMIalOwAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAMzd
YQw37gAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAADB3dwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAHD0AzMIrVcAAAYA
B64
# entry 12: write 327680+65536 (data)
put 327680 <<'B64'
H4sIAAAAAAACA+3BgQAAAACAILn9mRapCgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGqCMJ28AAABAA==
B64
# The oracle
# byte 0 must read 0x23 or 0x0; it reads 0x44
ok=0
qemu-io -f qcow2 -r -c 'read -P 0x23 0 1' "$img" | grep -q failed || ok=1
qemu-io -f qcow2 -r -c 'read -P 0x0 0 1' "$img" | grep -q failed || ok=1
[ $ok -eq 1 ] || { qemu-io -f qcow2 -r -c 'read -v 0 16' "$img"; fail 'crash-never-written at byte 0'; }
echo "no failure reproduced"
exit 0
