#!/usr/bin/env bash
# Found by `qcow2 crashtest --impl qemu-io --seed 20261125` (chunk seed 20261125) on 2026-11-26T00:33:01.471Z; shrunk to 8 steps.
# Crash state (qemu-io): crash-never-written: 0x0c over 1 bytes from 6 (never written there)
# Expected: byte 6: 0x00 or 0xc8 (flushed at step -1, steps up to 0 started)
#
# How the run was recorded:
#   qemu-img create -f qcow2 -o compat=1.1,cluster_size=512,refcount_bits=1,extended_l2=off,compression_type=zlib,lazy_refcounts=on disk.qcow2 3584; : > disk.log
#   the steps: qemu-io commands in one qemu-io (`open -o driver=qcow2,file.driver=blklogwrites,file.file.filename=disk.qcow2,file.log.filename=disk.log,file.log-append=on`,
#   `close` closes and opens again); snapshots: qemu-img snapshot -c|-a|-d NAME --image-opts <the same options>
#     0: break write_aio; aio_write -P 0xa3 2351 171; aio_write -P 0xc8 0 512; aio_flush
#     1: read 1022 14
#     2: ! write -z -u 2015 1706
#     3: write -s w1.bin 1449 158
#     4: discard 1501 54
#     5: write -s w2.bin 1699 596
#     6: read 1024 1536
#     7: truncate 1536
# The log has 51 entries; the crash comes after entry 19.
# Durable: entries 0..17 (up to the last FLUSH); landed since: 1 of the writes issued after it.
# Exits 1 when the failure reproduces, 0 when the state passes, 2 on set-up errors.
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
put() { base64 -d | gunzip | dd of="$img" bs=512 seek=$(( $1 / 512 )) conv=notrunc status=none || exit 2; }
# The image as of the last flush before the crash (5632 bytes)
base64 -d <<'B64' | gunzip > "$img" || exit 2
H4sIAAAAAAACAwt08/zNwMDAzIAKOCEUH4zPCKHYoFwmJDEUwIiDLoApUG7VKGVgYJBAszMBQokw
jIKBACyjQTBCQT3baBiMZNAAJnlGA2IUjIKRDUBtNWZGfkjjLslgNEBGAax+4BsNiFEwChgYFg8d
QIq3eAiU/3wIeS6ovOFoYhgFo2B4AA4C+Z+LQP4XgskzMgpC5Y1GQ3UoAACkesw9ABYAAA==
B64
# entry 19: write 3072+512 (l2-table)
put 3072 <<'B64'
H4sIAAAAAAACA2tgAAEBBlygAUzyMYyC4QkAfvnbQQACAAA=
B64
# The oracle
# byte 6 must read 0x0 or 0xc8; it reads 0xc
ok=0
qemu-io -f qcow2 -r -c 'read -P 0x0 6 1' "$img" | grep -q failed || ok=1
qemu-io -f qcow2 -r -c 'read -P 0xc8 6 1' "$img" | grep -q failed || ok=1
[ $ok -eq 1 ] || { qemu-io -f qcow2 -r -c 'read -v 6 16' "$img"; fail 'crash-never-written at byte 6'; }
echo "no failure reproduced"
exit 0
